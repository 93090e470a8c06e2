package interop

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ccworker/ccworker/internal/testenv"
)

// TestRealDeployment runs the mylib task library (imports) on ccworker's Python pool
// and looks at it the way a real deployment does, with Debian's Celery 5.2.6 and with
// Celery 5.6: the message's headers reach self.request (cyberCommons'
// authenticated_user), the decorator's soft time limit, a returned AsyncResult, Celery-like
// tracebacks, TimeLimitExceeded's argument, expiry checked when a child takes the task,
// and the remote-control replies (no built-in tasks advertised, registered items, conf).
func TestRealDeployment(t *testing.T) {
	s := newSetup(t)
	needCelery(t)
	lib, err := filepath.Abs("../tasks/python/testdata/pylib")
	require.NoError(t, err)
	f, err := os.OpenFile(s.config, os.O_APPEND|os.O_WRONLY, 0)
	require.NoError(t, err)
	// The tasks a Python task sends (Task.replace) go to the worker's queue.
	_, err = f.WriteString("\nimports = ('mylib.tasks',)\ntask_default_queue = '" + s.queue + "'\n")
	require.NoError(t, err)
	require.NoError(t, f.Close())
	t.Setenv("PYTHONPATH", lib) // inherited by ccworker and so by its Python children

	p, node := s.startNode(t, "-P", "prefork", "-c", "2")
	p.WaitLog(t, "mylib.tasks.add", 10*time.Second)
	script, err := filepath.Abs("testdata/realdeploy_client.py")
	require.NoError(t, err)

	for _, c := range []struct {
		name string
		site string // put first on PYTHONPATH: another Celery than Debian's
	}{{"celery-5.2", ""}, {"celery-5.6", "modern"}} {
		t.Run(c.name, func(t *testing.T) {
			path := lib
			if c.site != "" {
				path = testenv.ModernCelery(t) + string(os.PathListSeparator) + lib
			}
			cmd := exec.CommandContext(t.Context(), python, script, "--broker", s.amqpURL, "--backend", s.mongoURL,
				"--database", s.db.Name(), "--collection", collection, "--queue", s.queue, "--node", node)
			cmd.Env = append(os.Environ(), "PYTHONPATH="+path)
			var stderr strings.Builder
			cmd.Stderr = &stderr
			stdout, err := cmd.Output()
			require.NoError(t, err, "stderr:\n%s\nworker:\n%s", stderr.String(), p.Output())
			out, err := decodeLine(lastLine(string(stdout)))
			require.NoError(t, err)
			t.Logf("Celery %v", out["celery"])
			checkRealDeployment(t, out)
		})
	}
	p.Stop(t)
}

func checkRealDeployment(t *testing.T, out map[string]any) {
	get := func(k string) map[string]any {
		m, _ := out[k].(map[string]any)
		require.NotNil(t, m, "%s missing: %v", k, out)
		return m
	}
	h := get("headers")
	require.Equal(t, "SUCCESS", h["state"], "%v", h)
	req := h["result"].(map[string]any)
	assert.Equal(t, map[string]any{"username": "admin"}, req["authenticated_user"])
	props := req["properties"].(map[string]any)
	assert.Equal(t, "application/json", props["content_type"])
	assert.Equal(t, json.Number("2"), props["delivery_mode"])
	assert.Contains(t, props["application_headers"], "authenticated_user")
	assert.Nil(t, req["headers"])
	assert.Equal(t, "py", req["lang"])

	soft := get("soft_limit_from_decorator")
	assert.Equal(t, "FAILURE", soft["state"], "%v", soft)
	assert.Equal(t, "SoftTimeLimitExceeded", soft["exc_type"])
	secs, _ := soft["seconds"].(json.Number).Float64()
	assert.Less(t, secs, 9.0, "interrupted by the decorator's 1 s soft limit, not run for 10 s")

	ar := get("returns_async_result")
	assert.Equal(t, "SUCCESS", ar["state"], "%v", ar)
	assert.Equal(t, []any{[]any{"other-id", nil}, nil}, ar["result"])

	fail := get("fail")
	assert.Equal(t, "ValueError", fail["exc_type"])
	tb, _ := fail["traceback"].(string)
	assert.True(t, strings.HasPrefix(tb, "Traceback (most recent call last):"), tb)
	assert.NotContains(t, tb, `File "<string>"`)
	assert.Contains(t, tb, "raise ValueError('bad')")

	for k, want := range map[string]string{"replace": "3", "replace_chain": "13", "replace_group": "[3,4]"} {
		r := get(k)
		assert.Equal(t, "SUCCESS", r["state"], "%s: %v", k, r)
		assert.Equal(t, want, compactValue(t, r["result"]), "%s: the replacement's result under the task's id", k)
	}

	hard := get("hard_limit")
	assert.Equal(t, "TimeLimitExceeded", hard["exc_type"], "%v", hard)
	assert.Equal(t, []any{json.Number("1")}, hard["exc_args"], "Celery's argument: the limit as sent (1, not 1.0)")

	for k, want := range map[string]string{"starmap": "4", "map": `["finished","finished"]`,
		"chunks": "[[3,7],[11]]"} {
		r := get(k)
		assert.Equal(t, "SUCCESS", r["state"], "%s: %v", k, r)
		assert.Equal(t, want, compactValue(t, r["result"]), k)
	}

	exp := get("expired_behind_busy")
	assert.Equal(t, "REVOKED", exp["state"], "%v", exp)
	assert.Equal(t, "TaskRevokedError", exp["exc_type"])

	var names []string
	for _, n := range out["registered"].([]any) {
		names = append(names, n.(string))
	}
	assert.Contains(t, names, "mylib.tasks.add")
	for _, n := range names {
		assert.False(t, strings.HasPrefix(n, "ccworker."), "built-in %s advertised by a worker with its own tasks", n)
	}
	doc := out["registered_doc"].([]any)
	assert.Contains(t, doc, "mylib.tasks.add [__doc__=Add two numbers.]")
	assert.Contains(t, doc, "mylib.tasks.fail", "no docstring: the bare name, as Celery")
	assert.Contains(t, out["registered_name"], "mylib.tasks.add [name=mylib.tasks.add]")
	// Other attributes as Celery writes them; acks_late as this worker applies it (late by
	// default, the decorator's acks_late=False early).
	attrs := out["registered_attrs"]
	assert.Contains(t, attrs, "mylib.tasks.limited [rate_limit=10/m max_retries=3 acks_late=True]")
	assert.Contains(t, attrs, "mylib.tasks.early [max_retries=3 acks_late=False]")
	assert.Equal(t, true, out["conf_with_defaults_has_hijack"])
}
