package interop

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/ccworker/ccworker/internal/testenv"
	"github.com/ccworker/ccworker/internal/testharness"
)

// startNode starts ccworker under a node name of its own (broadcasts from concurrent
// test runs on the same broker must not reach it) and returns the expanded name.
func (s *setup) startNode(t *testing.T, extra ...string) (*testharness.Proc, string) {
	t.Helper()
	host, err := os.Hostname()
	require.NoError(t, err)
	node := testenv.Name(t, "n") + "@" + host
	return s.start(t, append([]string{"-n", node}, extra...)...), node
}

// control runs testdata/control_client.py SUBCOMMAND against node.
func (s *setup) control(t *testing.T, node, cmd string, extra ...string) (map[string]any, error) {
	return s.pyJSON(t, 60*time.Second, "control_client.py", append([]string{"--node", node, cmd}, extra...)...)
}

// list returns v as a JSON array (nil if it is not one).
func list(v any) []any {
	l, _ := v.([]any)
	return l
}

// hasID reports whether a list of task infos (active, reserved) has the id.
func hasID(infos []any, id any) bool {
	for _, x := range infos {
		if m, ok := x.(map[string]any); ok && m["id"] == id {
			return true
		}
	}
	return false
}

// TestInspect: Celery's inspect API and the `celery inspect` / `celery control` CLI
// against a busy ccworker (spec §3.12; cyberCommons §7.1-2 read registered and
// active_queues).
func TestInspect(t *testing.T) {
	needCelery(t)
	s := newSetup(t)
	w, node := s.startNode(t, "--eta-hold", "10s")

	var (
		wg                 sync.WaitGroup
		static, busy       map[string]any
		staticErr, busyErr error
		ping, revoke       []byte
		pingErr, revokeErr error
	)
	celeryCLI := func(args ...string) ([]byte, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		return exec.CommandContext(ctx, python, append([]string{"-m", "celery", "-b", s.amqpURL}, args...)...).CombinedOutput()
	}
	wg.Add(4)
	go func() { defer wg.Done(); static, staticErr = s.control(t, node, "inspect") }()
	go func() { defer wg.Done(); busy, busyErr = s.control(t, node, "busy") }()
	go func() { defer wg.Done(); ping, pingErr = celeryCLI("inspect", "ping", "-d", node) }()
	go func() {
		defer wg.Done()
		revoke, revokeErr = celeryCLI("control", "revoke", testharness.NewUUID(), "-d", node)
	}()
	wg.Wait()

	t.Run("cli", func(t *testing.T) {
		assert.NoError(t, pingErr, "celery inspect ping: %s", ping)
		assert.Contains(t, string(ping), "pong")
		assert.Contains(t, string(ping), node)
		assert.NoError(t, revokeErr, "celery control revoke: %s", revoke)
	})
	t.Run("static", func(t *testing.T) {
		require.NoError(t, staticErr)
		assert.Equal(t, map[string]any{"ok": "pong"}, static["ping"])

		reg := list(static["registered"])
		assert.Contains(t, reg, "ccworker.add")
		for _, name := range reg {
			assert.False(t, strings.HasPrefix(name.(string), "celery."), "registered lists %s", name)
		}
		var doc string
		for _, name := range list(static["registered_doc"]) {
			if strings.HasPrefix(name.(string), "ccworker.add ") {
				doc = name.(string)
			}
		}
		assert.Regexp(t, `^ccworker\.add \[__doc__=.+\]$`, doc, "registered('__doc__'): %v", static["registered_doc"])

		queues := list(static["active_queues"])
		require.NotEmpty(t, queues, "active_queues (cyberCommons takes reply[0].exchange.name)")
		assert.Equal(t, s.queue, sub(queues[0].(map[string]any), "exchange")["name"])

		stats := sub(static, "stats")
		require.NotNil(t, stats, "stats: %v", static["stats"])
		assert.Contains(t, stats, "total")
		assert.Equal(t, json.Number("8"), sub(stats, "pool")["max-concurrency"], "pool: %v", stats["pool"])

		conf := sub(static, "conf")
		require.NotEmpty(t, conf, "conf")
		b, _ := json.Marshal(conf)
		assert.NotContains(t, string(b), "guest:guest", "conf shows the broker password")
		assert.NotNil(t, static["revoked"], "revoked replies a list")
	})
	t.Run("busy", func(t *testing.T) {
		require.NoError(t, busyErr)
		running, held := busy["running"], busy["held"]
		assert.True(t, hasID(list(busy["active"]), running), "active lists the running sleep: %v", busy["active"])
		reserved := busy["reserved"]
		require.NotNil(t, reserved, "reserved replied")
		assert.False(t, hasID(list(reserved), running), "reserved lists a running task: %v", reserved)
		var sched []any
		for _, e := range list(busy["scheduled"]) {
			sched = append(sched, sub(e.(map[string]any), "request"))
		}
		assert.True(t, hasID(sched, held), "scheduled lists the held countdown task: %v", busy["scheduled"])
		q := sub(busy, "query_task")
		require.NotNil(t, q, "query_task: %v", busy["query_task"])
		r := list(q[running.(string)])
		require.Len(t, r, 2, "query_task[running]: %v", q)
		assert.Equal(t, "active", r[0])
	})
	w.Stop(t)
}

// TestRevoke: a revoked id is discarded on arrival; revoke(terminate=True) stops a
// running task (spec §3.11).
func TestRevoke(t *testing.T) {
	needCelery(t)
	s := newSetup(t)
	w, node := s.startNode(t)
	out, err := s.control(t, node, "revoke")
	require.NoError(t, err)
	t.Logf("%v", out)

	rev := sub(out, "revoked")
	assert.Equal(t, "REVOKED", rev["state"], "%v", rev)
	assert.Equal(t, "TaskRevokedError", rev["exc_type"], "%v", rev)
	assert.Equal(t, []any{"revoked"}, rev["exc_args"])

	assert.Equal(t, true, out["active"], "the sleep(30) was running before the terminate")
	term := sub(out, "terminated")
	assert.Equal(t, "REVOKED", term["state"], "%v", term)
	assert.Equal(t, "TaskRevokedError", term["exc_type"], "%v", term)
	assert.Equal(t, []any{"terminated"}, term["exc_args"])
	el, _ := out["terminate_s"].(json.Number).Float64()
	assert.Less(t, el, 5.0, "terminate takes effect quickly")
	assert.Equal(t, 2, s.countDocs(t, bson.D{{Key: "status", Value: "REVOKED"}}))
	w.Stop(t)
}

// TestControlCommands: add_consumer/cancel_consumer, rate_limit, time_limit and shutdown
// sent with Celery's app.control.
func TestControlCommands(t *testing.T) {
	needCelery(t)
	s := newSetup(t)
	q2 := testenv.Name(t, "q2")
	t.Cleanup(func() { testharness.DeleteQueue(t, s.amqpURL, q2) })
	w, node := s.startNode(t)
	out, err := s.control(t, node, "control", "--queue2", q2)
	require.NoError(t, err)
	t.Logf("%v", out)

	add := sub(out, "add_consumer")
	assert.Contains(t, add, "ok", "add_consumer reply: %v", add)
	q2task := sub(out, "queue2_task")
	assert.Equal(t, "SUCCESS", q2task["state"], "a task on the added queue: %v", q2task)
	assert.Equal(t, json.Number("10"), q2task["result"])
	assert.Contains(t, list(out["queues_after_add"]), q2)
	assert.Contains(t, sub(out, "cancel_consumer"), "ok", "cancel_consumer reply: %v", out["cancel_consumer"])
	assert.NotContains(t, list(out["queues_after_cancel"]), q2)
	assert.Contains(t, list(out["queues_after_cancel"]), s.queue)

	assert.Contains(t, sub(out, "rate_limit"), "ok", "rate_limit reply: %v", out["rate_limit"])
	assert.Contains(t, sub(out, "time_limit"), "ok", "time_limit reply: %v", out["time_limit"])
	soft := sub(out, "soft_limited")
	assert.Equal(t, "SoftTimeLimitExceeded", soft["exc_type"], "sleep(5) after time_limit(soft=0.5): %v", soft)
	el, _ := out["soft_limited_s"].(json.Number).Float64()
	assert.Less(t, el, 4.0)

	code, ok := w.Wait(10 * time.Second)
	require.True(t, ok, "ccworker still running 10 s after the shutdown command")
	assert.Equal(t, 0, code, "exit code after the shutdown command")
}

// TestEvents: with -E a Celery events.State sees the worker alive, each task's final
// state, and the worker-offline event after SIGTERM (spec §3.13).
func TestEvents(t *testing.T) {
	needCelery(t)
	s := newSetup(t)
	w, node := s.startNode(t, "-E")

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := s.pyScript(ctx, "control_client.py", "--node", node, "events")
	stderr := &testharness.Buffer{}
	cmd.Stderr = stderr
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	defer func() { _ = cmd.Wait() }()
	lines := bufio.NewScanner(stdout)
	next := func() map[string]any {
		t.Helper()
		if !lines.Scan() {
			t.Fatalf("control_client.py events printed no line; stderr:\n%s", stderr.String())
		}
		m, err := decodeLine(lines.Text())
		require.NoError(t, err)
		t.Logf("%v", m)
		return m
	}

	first := next()
	assert.Contains(t, list(first["alive"]), node, "alive workers after the tasks: %v", first)
	assert.Equal(t, map[string]any{"add": "SUCCESS", "fail": "FAILURE", "revoked": "REVOKED"}, first["tasks"])

	// SIGTERM while a task runs: the warm shutdown drains it first, then the worker must
	// still announce worker-offline.
	busy := s.publish(t, "ccworker.sleep", "[1.5]", 1)
	w.WaitLogFunc(t, "the sleep received", 10*time.Second, func(log string) bool { return lineWith(log, "received", busy[0]) })
	w.Signal(t, syscall.SIGTERM)
	second := next()
	assert.Contains(t, list(second["types"]), "worker-offline")
	assert.NotContains(t, list(second["alive"]), node, "alive after worker-offline: %v", second)
	assert.Contains(t, list(second["workers"]), node)
	code, ok := w.Wait(10 * time.Second)
	require.True(t, ok)
	assert.Equal(t, 0, code)
}
