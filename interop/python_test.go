package interop

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestPythonTasks runs a cybercomq-style task library (../tasks/python/testdata/pylib/mylib, imported
// through the config's imports) on ccworker's Python pool and checks what Debian's Celery
// client sees: results, the task's own exception class, self.retry() and the soft time
// limit.
func TestPythonTasks(t *testing.T) {
	s := newSetup(t)
	needCelery(t)
	lib, err := filepath.Abs("../tasks/python/testdata/pylib")
	require.NoError(t, err)
	f, err := os.OpenFile(s.config, os.O_APPEND|os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteString("\nimports = ('mylib.tasks',)\n")
	require.NoError(t, err)
	require.NoError(t, f.Close())
	t.Setenv("PYTHONPATH", lib) // inherited by ccworker and so by its Python children

	p := s.start(t, "-P", "prefork", "-c", "2")
	p.WaitLog(t, "mylib.tasks.add", 10*time.Second) // the banner or the registration line lists it

	t.Run("add", func(t *testing.T) {
		out, err := s.call(t, client{}, "mylib.tasks.add", "[2, 3]", "{}", 30)
		require.NoError(t, err)
		assert.Equal(t, "SUCCESS", out.State, "%+v", out)
		assert.Equal(t, json.Number("5"), out.Result)
	})
	t.Run("exception", func(t *testing.T) {
		out, err := s.call(t, client{}, "mylib.tasks.fail", "[]", "{}", 30)
		require.NoError(t, err)
		assert.Equal(t, "FAILURE", out.State, "%+v", out)
		assert.Equal(t, "ValueError", out.ExcType)
		assert.Equal(t, "builtins", out.ExcModule)
		assert.Equal(t, []any{"bad"}, out.ExcMessage)
		assert.True(t, strings.HasPrefix(out.Traceback, "Traceback (most recent call last):"), out.Traceback)
		assert.Contains(t, out.Traceback, "raise ValueError('bad')")
	})
	t.Run("retry", func(t *testing.T) {
		out, err := s.call(t, client{}, "mylib.tasks.retrying", "[]", "{}", 30)
		require.NoError(t, err)
		assert.Equal(t, "SUCCESS", out.State, "%+v", out)
		assert.Equal(t, json.Number("2"), out.Result)
	})
	t.Run("autoretry", func(t *testing.T) {
		out, err := s.call(t, client{}, "mylib.tasks.autoretrying", `["k"]`, "{}", 30)
		require.NoError(t, err)
		assert.Equal(t, "FAILURE", out.State, "%+v", out)
		assert.Equal(t, "KeyError", out.ExcType)
		assert.Equal(t, []any{"k"}, out.ExcMessage)
	})
	t.Run("soft time limit", func(t *testing.T) {
		stdout, stderr, _, err := s.run(t.Context(), client{}, "call", "mylib.tasks.slow", "--args", "[10]",
			"--soft-time-limit", "0.5", "--timeout", "30")
		require.NoError(t, err, stderr)
		out, err := parseCallOut(stdout)
		require.NoError(t, err)
		assert.Equal(t, "FAILURE", out.State, "%+v", out)
		assert.Equal(t, "SoftTimeLimitExceeded", out.ExcType)
		assert.Equal(t, "billiard.exceptions", out.ExcModule)
	})
	t.Run("worker lost", func(t *testing.T) {
		out, err := s.call(t, client{}, "mylib.tasks.crash", "[]", "{}", 30)
		require.NoError(t, err)
		assert.Equal(t, "FAILURE", out.State, "%+v", out)
		assert.Equal(t, "WorkerLostError", out.ExcType)
		require.Len(t, out.ExcMessage, 1)
		assert.Regexp(t, `^Worker exited prematurely: exitcode 1 Job: \d+\.$`, out.ExcMessage[0])
		// A fresh child serves the next task.
		out, err = s.call(t, client{}, "mylib.tasks.add", "[1, 1]", "{}", 30)
		require.NoError(t, err)
		assert.Equal(t, json.Number("2"), out.Result)
	})
	p.Stop(t)
}
