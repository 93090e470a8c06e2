package interop

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/ccworker/ccworker/internal/testenv"
	"github.com/ccworker/ccworker/internal/testharness"
)

// pyScript runs /usr/bin/python3 testdata/<script> with the setup's app flags (broker,
// backend, database, collection, queue) followed by args.
func (s *setup) pyScript(ctx context.Context, script string, args ...string) *exec.Cmd {
	path, _ := filepath.Abs(filepath.Join("testdata", script))
	full := append([]string{path, "--broker", s.amqpURL, "--backend", s.mongoURL, "--database", s.db.Name(),
		"--collection", collection, "--queue", s.queue}, args...)
	return exec.CommandContext(ctx, python, full...)
}

// pyJSON runs a testdata script to completion and decodes its last stdout line (numbers
// kept as json.Number).
func (s *setup) pyJSON(t *testing.T, timeout time.Duration, script string, args ...string) (map[string]any, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := s.pyScript(ctx, script, args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	if err := cmd.Run(); err != nil {
		return nil, errors.New(script + " " + strings.Join(args, " ") + ": " + err.Error() +
			"\nstdout:\n" + o.String() + "\nstderr:\n" + e.String())
	}
	return decodeLine(lastLine(o.String()))
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

func decodeLine(line string) (map[string]any, error) {
	dec := json.NewDecoder(strings.NewReader(line))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, errors.New("cannot parse " + line + ": " + err.Error())
	}
	return m, nil
}

// sub returns m[key] as an object (nil if it is not one).
func sub(m map[string]any, key string) map[string]any {
	x, _ := m[key].(map[string]any)
	return x
}

// TestCanvas sends Celery canvas primitives (chain, link, link_error, group, chord, retry)
// from Celery 5.2.6 and checks what the client gets back (spec §3.10, §2.8).
func TestCanvas(t *testing.T) {
	needCelery(t)
	s := newSetup(t)
	w := s.start(t)
	defer w.Stop(t)

	scenarios := []string{"chain_add", "pipe_echo", "link", "chain_fail", "link_error", "group_add",
		"chord_echo", "retry", "chain_chord", "chain_chord_group"}
	outs := make(map[string]map[string]any, len(scenarios))
	errs := make(map[string]error, len(scenarios))
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	for _, sc := range scenarios {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := s.pyJSON(t, 60*time.Second, "canvas_client.py", sc)
			mu.Lock()
			defer mu.Unlock()
			outs[sc], errs[sc] = out, err
		}()
	}
	wg.Wait()
	t.Logf("canvas scenarios took %v", time.Since(start).Round(time.Millisecond))

	get := func(t *testing.T, sc string) map[string]any {
		t.Helper()
		require.NoError(t, errs[sc])
		t.Logf("%s: %v", sc, outs[sc])
		return outs[sc]
	}
	j := func(v any) string { return compactValue(t, v) }

	t.Run("chain", func(t *testing.T) {
		out := get(t, "chain_add")
		require.Equal(t, "SUCCESS", out["state"], "%v", out)
		assert.Equal(t, "6", j(out["result"]))
		raw, err := s.findRaw(t, out["id"].(string))
		require.NoError(t, err)
		parentID, _ := raw.Lookup("parent_id").StringValueOK()
		assert.Equal(t, out["parent"], parentID, "the second step's parent_id is the first step")
	})
	t.Run("pipe-echo", func(t *testing.T) {
		out := get(t, "pipe_echo")
		require.Equal(t, "SUCCESS", out["state"], "%v", out)
		assert.Equal(t, `{"args":[3],"kwargs":{}}`, j(out["result"]))
	})
	t.Run("link", func(t *testing.T) {
		out := get(t, "link")
		assert.Equal(t, "4", j(sub(out, "parent")["result"]), "%v", out)
		cb := sub(out, "callback")
		require.Equal(t, "SUCCESS", cb["state"], "the link callback: %v", cb)
		assert.Equal(t, `{"args":[4],"kwargs":{}}`, j(cb["result"]))
	})
	t.Run("chain-failure", func(t *testing.T) {
		out := get(t, "chain_fail")
		assert.Equal(t, "ValueError", out["exc_type"], "the chain's get() must raise the first step's error: %v", out)
		assert.Equal(t, "FAILURE", out["state"], "the second step is marked FAILURE: %v", out)
		parent := sub(out, "parent_outcome")
		assert.Equal(t, "FAILURE", parent["state"], "%v", parent)
		assert.Equal(t, "ValueError", parent["exc_type"], "%v", parent)
		raw, err := s.findRaw(t, out["id"].(string))
		require.NoError(t, err, "the second step's document")
		assert.Equal(t, "FAILURE", raw.Lookup("status").StringValue())
		assert.Contains(t, raw.Lookup("result").StringValue(), `"ValueError"`)
	})
	t.Run("link-error", func(t *testing.T) {
		out := get(t, "link_error")
		task := sub(out, "task")
		assert.Equal(t, "ValueError", task["exc_type"], "%v", task)
		eb := sub(out, "errback")
		require.Equal(t, "SUCCESS", eb["state"], "the errback: %v", eb)
		assert.Equal(t, compactValue(t, map[string]any{"args": []any{task["id"]}, "kwargs": map[string]any{}}),
			j(eb["result"]), "an old-style errback gets (failed task id,)")
	})
	t.Run("group", func(t *testing.T) {
		out := get(t, "group_add")
		require.Nil(t, out["exc_type"], "%v", out)
		assert.Equal(t, "[0,2,4,6,8]", j(out["result"]))
		ids, _ := out["ids"].([]any)
		require.Len(t, ids, 5)
		raw, err := s.findRaw(t, ids[0].(string))
		require.NoError(t, err)
		_, ok := raw.Lookup("group_id").StringValueOK()
		assert.True(t, ok, "a group member's document has its group_id")
	})
	t.Run("chord", func(t *testing.T) {
		out := get(t, "chord_echo")
		require.Equal(t, "SUCCESS", out["state"], "%v", out)
		assert.Equal(t, `{"args":[[0,2,4,6]],"kwargs":{}}`, j(out["result"]))
	})
	t.Run("chord-in-chain", func(t *testing.T) {
		out := get(t, "chain_chord")
		require.Equal(t, "SUCCESS", out["state"], "%v", out)
		assert.Equal(t, `{"args":[{"args":[[3,4]],"kwargs":{}}],"kwargs":{}}`, j(out["result"]))
	})
	t.Run("chain-ending-in-a-group-after-a-chord", func(t *testing.T) {
		out := get(t, "chain_chord_group")
		require.Nil(t, out["exc_type"], "%v", out)
		one := `{"args":[{"args":[[3,4]],"kwargs":{}}],"kwargs":{}}`
		assert.Equal(t, "["+one+","+one+"]", j(out["result"]))
	})
	t.Run("retry-countdown", func(t *testing.T) {
		out := get(t, "retry")
		require.Equal(t, "SUCCESS", out["state"], "%v", out)
		assert.Equal(t, "2", j(out["result"]))
		el, _ := out["elapsed"].(json.Number).Float64()
		assert.GreaterOrEqual(t, el, 1.9, "two retries 1 s apart")
		assert.Less(t, el, 10.0)
		raw, err := s.findRaw(t, out["id"].(string))
		require.NoError(t, err)
		assert.EqualValues(t, 2, raw.Lookup("retries").AsInt64())
	})
	assert.Zero(t, s.countDocs(t, bson.D{{Key: "status", Value: "PENDING"}}), "no PENDING documents")
}

// TestCanvasDefaultQueue: a chain step whose signature names no queue goes to the
// worker's task_default_queue. Celery's producer declares the destination queue (and its
// exchange) when it publishes (app/amqp.py send_task_message: declare=[queue]), so the
// step waits there even if no worker consumes that queue yet.
func TestCanvasDefaultQueue(t *testing.T) {
	needCelery(t)
	s := newSetup(t)
	def := testenv.Name(t, "qd")
	t.Cleanup(func() { testharness.DeleteQueue(t, s.amqpURL, def) })
	f, err := os.OpenFile(s.config, os.O_APPEND|os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteString("task_default_queue = '" + def + "'\n")
	require.NoError(t, err)
	require.NoError(t, f.Close())
	w := s.start(t)
	defer w.Stop(t)

	out, err := s.pyJSON(t, 60*time.Second, "canvas_client.py", "chain_default_queue")
	require.NoError(t, err)
	parent := sub(out, "parent")
	require.Equal(t, "SUCCESS", parent["state"], "the first step: %v", out)
	assert.Equal(t, 1, testharness.WaitReady(t, s.amqpURL, def, 1, 5*time.Second),
		"the second step must wait in the worker's task_default_queue %s (-1: never declared)", def)
}

// TestCanvasChordInChainCelery56 sends the chord-in-chain scenarios with Celery 5.6's
// client (its canvas builds the same messages as 5.2's for these).
func TestCanvasChordInChainCelery56(t *testing.T) {
	needCelery(t)
	site := testenv.ModernCelery(t)
	s := newSetup(t)
	// 5.6 makes the chord's body a chain (echo | group): no queue of its own, so its
	// celery.chord_unlock goes to the worker's default queue, as a Celery worker sends it.
	f, err := os.OpenFile(s.config, os.O_APPEND|os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteString("\ntask_default_queue = '" + s.queue + "'\n")
	require.NoError(t, err)
	require.NoError(t, f.Close())
	w := s.start(t)
	defer w.Stop(t)
	for sc, want := range map[string]string{
		"chain_chord":       `{"args":[{"args":[[3,4]],"kwargs":{}}],"kwargs":{}}`,
		"chain_chord_group": `[{"args":[{"args":[[3,4]],"kwargs":{}}],"kwargs":{}},{"args":[{"args":[[3,4]],"kwargs":{}}],"kwargs":{}}]`,
	} {
		ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
		cmd := s.pyScript(ctx, "canvas_client.py", sc)
		cmd.Env = append(os.Environ(), "PYTHONPATH="+site)
		var o, e bytes.Buffer
		cmd.Stdout, cmd.Stderr = &o, &e
		err := cmd.Run()
		cancel()
		require.NoError(t, err, "%s: %s", sc, e.String())
		out, err := decodeLine(lastLine(o.String()))
		require.NoError(t, err)
		require.Nil(t, out["exc_type"], "%s: %v", sc, out)
		assert.Equal(t, want, compactValue(t, out["result"]), sc)
	}
}
