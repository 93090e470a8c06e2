package interop

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// addCommands appends a ccworker_commands setting running the scripts of
// testdata/cmd (through /bin/sh, so their mode bits do not matter) to the setup's
// celeryconfig.py.
func (s *setup) addCommands(t *testing.T) (scripts string) {
	t.Helper()
	scripts, err := filepath.Abs(filepath.Join("testdata", "cmd"))
	require.NoError(t, err)
	sh := func(name string, extra ...string) string {
		q := []string{"'/bin/sh'", fmt.Sprintf("'%s'", filepath.Join(scripts, name))}
		for _, e := range extra {
			q = append(q, fmt.Sprintf("'%s'", e))
		}
		return "[" + strings.Join(q, ", ") + "]"
	}
	text := fmt.Sprintf(`
ccworker_commands = {
    'cmd.json': {'argv': %s, 'doc': 'Print steps and name as JSON.'},
    'cmd.plain': {'argv': %s},
    'cmd.fail': {'argv': %s},
    'cmd.stdin': {'argv': ['cat'], 'input': 'stdin'},
    'cmd.shell': {'argv': 'printf "%%s|" {0} {1}', 'shell': True},
    'cmd.soft': {'argv': %s},
    'cmd.tree': {'argv': %s},
}
`, sh("json.sh", "{steps}", "{name}"), sh("plain.sh"), sh("fail.sh"), sh("soft.sh", "{0}"), sh("tree.sh", "{0}"))
	f, err := os.OpenFile(s.config, os.O_APPEND|os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteString(text)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	return scripts
}

// pidFrom reads a pid file a test script wrote.
func pidFrom(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err, "pid file")
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	require.NoError(t, err)
	return pid
}

// requireGone fails unless pid is gone (or a zombie) within a few seconds; it kills a
// survivor so that the test leaves nothing behind.
func requireGone(t *testing.T, pid int, what string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return
		}
		if i := strings.LastIndexByte(string(b), ')'); i >= 0 && i+2 < len(b) && b[i+2] == 'Z' {
			return
		}
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("%s (pid %d) survived its task", what, pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestCommandTasks runs ccworker_commands tasks through Celery 5.2.6: results parsed
// from JSON or wrapped, CalledProcessError with the stderr tail, arguments on stdin, a
// missing argument, shell quoting, the soft limit's SIGTERM, the hard limit's and
// revoke(terminate=True)'s SIGKILL of the whole process tree.
func TestCommandTasks(t *testing.T) {
	needCelery(t)
	s := newSetup(t)
	scripts := s.addCommands(t)
	w, node := s.startNode(t)
	dirs := map[string]string{"soft": t.TempDir(), "hard": t.TempDir(), "revoke": t.TempDir()}

	type callCase struct {
		name, task, args, kwargs string
		extra                    []string
	}
	cases := []callCase{
		{name: "json", task: "cmd.json", args: `[]`, kwargs: `{"steps": 5, "name": "two words"}`},
		{name: "plain", task: "cmd.plain", args: `[]`, kwargs: `{}`},
		{name: "fail", task: "cmd.fail", args: `[]`, kwargs: `{}`},
		{name: "stdin", task: "cmd.stdin", args: `[1, "a"]`, kwargs: `{"k": [2.5]}`},
		{name: "missing", task: "cmd.json", args: `[]`, kwargs: `{"steps": 5}`},
		{name: "shell", task: "cmd.shell", args: `["a b; echo x", "it's"]`, kwargs: `{}`},
		{name: "soft", task: "cmd.soft", args: fmt.Sprintf(`[%q]`, dirs["soft"]), kwargs: `{}`,
			extra: []string{"--soft-time-limit", "1", "--time-limit", "20"}},
		{name: "hard", task: "cmd.tree", args: fmt.Sprintf(`[%q]`, dirs["hard"]), kwargs: `{}`,
			extra: []string{"--time-limit", "1"}},
	}
	outs := make(map[string]callOut, len(cases))
	errs := make(map[string]error, len(cases))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, c := range cases {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stdout, stderr, code, err := s.run(t.Context(), client{}, append([]string{"call", c.task, "--args", c.args,
				"--kwargs", c.kwargs, "--timeout", "30"}, c.extra...)...)
			var out callOut
			if err == nil {
				out, err = parseCallOut(stdout)
				out.code, out.stderr = code, stderr
			}
			mu.Lock()
			outs[c.name], errs[c.name] = out, err
			mu.Unlock()
		}()
	}
	var revoke map[string]any
	var revokeErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		revoke, revokeErr = s.pyJSON(t, 90*time.Second, "cmd/cmd_client.py", "--node", node, "--task", "cmd.tree",
			"--args", fmt.Sprintf(`[%q]`, dirs["revoke"]))
	}()
	wg.Wait()

	get := func(t *testing.T, name, state string) callOut {
		t.Helper()
		require.NoError(t, errs[name])
		out := outs[name]
		require.Equal(t, state, out.State, "%+v", out)
		return out
	}
	t.Run("json", func(t *testing.T) {
		out := get(t, "json", "SUCCESS")
		assert.Equal(t, `{"name":"two words","steps":5}`, compactValue(t, out.Result))
	})
	t.Run("plain", func(t *testing.T) {
		out := get(t, "plain", "SUCCESS")
		assert.Equal(t, `{"returncode":0,"stderr":"warn\n","stdout":"hello\n"}`, compactValue(t, out.Result))
	})
	t.Run("fail", func(t *testing.T) {
		out := get(t, "fail", "FAILURE")
		assert.Equal(t, "CalledProcessError", out.ExcType)
		assert.Equal(t, "subprocess", out.ExcModule, "Celery imports the real subprocess.CalledProcessError")
		require.Len(t, out.ExcMessage, 4, "%v", out.ExcMessage)
		assert.Equal(t, json.Number("3"), out.ExcMessage[0])
		assert.Equal(t, []any{"/bin/sh", filepath.Join(scripts, "fail.sh")}, out.ExcMessage[1])
		assert.Equal(t, "", out.ExcMessage[2])
		assert.Equal(t, "something broke\n", out.ExcMessage[3])
		assert.True(t, strings.HasPrefix(out.Traceback, "something broke\n"), "traceback %q", out.Traceback)
		assert.True(t, strings.HasSuffix(out.Traceback, "returned non-zero exit status 3.\n"), "traceback %q", out.Traceback)
	})
	t.Run("stdin", func(t *testing.T) {
		out := get(t, "stdin", "SUCCESS")
		res, ok := out.Result.(map[string]any)
		require.True(t, ok, "%v", out.Result)
		// Every header and property of the message, as a Celery task's self.request has them.
		assert.Equal(t, out.ID, res["headers"].(map[string]any)["id"])
		assert.Equal(t, "application/json", res["properties"].(map[string]any)["content_type"])
		delete(res, "headers")
		delete(res, "properties")
		want := fmt.Sprintf(`{"args":[1,"a"],"id":%q,"kwargs":{"k":[2.5]},"retries":0,"task":"cmd.stdin"}`, out.ID)
		assert.Equal(t, want, compactValue(t, res))
	})
	t.Run("missing", func(t *testing.T) {
		out := get(t, "missing", "FAILURE")
		assert.Equal(t, "TypeError", out.ExcType)
		assert.Equal(t, `["cmd.json() missing required keyword argument: 'name'"]`, compactValue(t, out.ExcMessage))
	})
	t.Run("shell", func(t *testing.T) {
		out := get(t, "shell", "SUCCESS")
		assert.Equal(t, `{"returncode":0,"stderr":"","stdout":"a b; echo x|it's|"}`, compactValue(t, out.Result))
	})
	t.Run("soft", func(t *testing.T) {
		out := get(t, "soft", "FAILURE")
		assert.Equal(t, "SoftTimeLimitExceeded", out.ExcType)
		b, err := os.ReadFile(filepath.Join(dirs["soft"], "marker"))
		require.NoError(t, err, "the script's TERM trap ran")
		assert.Equal(t, "terminated\n", string(b))
		requireGone(t, pidFrom(t, filepath.Join(dirs["soft"], "pid")), "soft.sh")
	})
	t.Run("hard", func(t *testing.T) {
		out := get(t, "hard", "FAILURE")
		assert.Equal(t, "TimeLimitExceeded", out.ExcType)
		requireGone(t, pidFrom(t, filepath.Join(dirs["hard"], "leader")), "tree.sh")
		requireGone(t, pidFrom(t, filepath.Join(dirs["hard"], "grandchild")), "tree.sh's grandchild")
	})
	t.Run("revoke", func(t *testing.T) {
		require.NoError(t, revokeErr)
		assert.Equal(t, true, revoke["active"], "%v", revoke)
		assert.Equal(t, "REVOKED", revoke["state"], "%v", revoke)
		assert.Equal(t, "TaskRevokedError", revoke["exc_type"], "%v", revoke)
		el, _ := revoke["terminate_s"].(json.Number).Float64()
		assert.Less(t, el, 5.0, "terminate takes effect quickly")
		requireGone(t, pidFrom(t, filepath.Join(dirs["revoke"], "leader")), "tree.sh")
		requireGone(t, pidFrom(t, filepath.Join(dirs["revoke"], "grandchild")), "tree.sh's grandchild")
	})
	w.Stop(t)
}
