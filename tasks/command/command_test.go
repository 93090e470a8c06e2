//go:build unix

package command

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/ccworker/ccworker/pool"
	"github.com/ccworker/ccworker/protocol"
	"github.com/ccworker/ccworker/tasks"
)

// TestMain checks that no handler leaves a goroutine behind (ants, imported through
// package pool, starts its default pool's goroutines at init).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/panjf2000/ants/v2.(*poolCommon).purgeStaleWorkers"),
		goleak.IgnoreTopFunction("github.com/panjf2000/ants/v2.(*poolCommon).ticktock"))
}

// script writes an executable sh script and returns its path.
func script(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "s.sh")
	require.NoError(t, os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o700))
	return p
}

func newHandler(t *testing.T, spec Spec) tasks.Handler {
	t.Helper()
	if spec.Name == "" {
		spec.Name = "test.cmd"
	}
	h, err := New(spec, Options{Environ: os.Environ()})
	require.NoError(t, err)
	return h
}

func call(args []any, kwargs map[string]any) *tasks.Call {
	return &tasks.Call{Args: args, Kwargs: kwargs,
		Request: &protocol.Request{ID: "id-1", Task: "test.cmd", Retries: 2}}
}

func run(t *testing.T, spec Spec, args []any, kwargs map[string]any) (any, error) {
	t.Helper()
	return newHandler(t, spec)(context.Background(), call(args, kwargs))
}

func exception(t *testing.T, err error) *tasks.Exception {
	t.Helper()
	var exc *tasks.Exception
	require.ErrorAs(t, err, &exc)
	return exc
}

func TestJSONStdout(t *testing.T) {
	s := script(t, `printf '  {"a": [1, 2.5, 12345678901234567890, null, true], "b": "x"}\n\n'; echo noise >&2`)
	v, err := run(t, Spec{Argv: []string{s}}, nil, nil)
	require.NoError(t, err)
	big, _ := new(big.Int).SetString("12345678901234567890", 10)
	assert.Equal(t, map[string]any{"a": []any{int64(1), 2.5, big, nil, true}, "b": "x"}, v)

	v, err = run(t, Spec{Argv: []string{script(t, "echo 42")}}, nil, nil)
	require.NoError(t, err)
	assert.Equal(t, int64(42), v)
}

func TestPlainStdout(t *testing.T) {
	s := script(t, `echo hello; echo "the err" >&2; printf 'caf\303\251 \377'`)
	v, err := run(t, Spec{Argv: []string{s}}, nil, nil)
	require.NoError(t, err)
	assert.Equal(t, map[string]any{"returncode": int64(0), "stdout": "hello\ncafé \uFFFD", "stderr": "the err\n"}, v)

	v, err = run(t, Spec{Argv: []string{script(t, "true")}}, nil, nil)
	require.NoError(t, err)
	assert.Equal(t, map[string]any{"returncode": int64(0), "stdout": "", "stderr": ""}, v, "empty output is not JSON")
}

func TestOutputCap(t *testing.T) {
	// 100 000 bytes each way, far past the pipe buffers: the program must not block.
	s := script(t, `i=0; while [ $i -lt 10000 ]; do echo "out-$((i%10))xxxx"; echo "err-$((i%10))yyyy" >&2; i=$((i+1)); done; echo LAST >&2`)
	v, err := run(t, Spec{Argv: []string{s}, MaxOutput: 25}, nil, nil)
	require.NoError(t, err)
	m := v.(map[string]any)
	assert.Equal(t, "out-0xxxx\nout-1xxxx\nout-2", m["stdout"], "the head of stdout")
	assert.Equal(t, "err-8yyyy\nerr-9yyyy\nLAST\n", m["stderr"], "the tail of stderr")

	// JSON cut by the cap is not parsed.
	v, err = run(t, Spec{Argv: []string{script(t, `echo '["aaaaaaaaaa", "bbbbbbbbbb"]'`)}, MaxOutput: 10}, nil, nil)
	require.NoError(t, err)
	assert.Equal(t, `["aaaaaaaa`, v.(map[string]any)["stdout"])

	// A multi-byte character cut by the cap is dropped, not mangled.
	v, err = run(t, Spec{Argv: []string{script(t, `printf 'ab\303\251cd'; printf 'x\303\251yz' >&2`)}, MaxOutput: 3}, nil, nil)
	require.NoError(t, err)
	assert.Equal(t, "ab", v.(map[string]any)["stdout"])
	assert.Equal(t, "yz", v.(map[string]any)["stderr"])
}

func TestNonZeroExit(t *testing.T) {
	s := script(t, `echo partial; i=0; while [ $i -lt 50 ]; do echo "line $i" >&2; i=$((i+1)); done; exit 3`)
	_, err := run(t, Spec{Argv: []string{s, "{0}"}, MaxOutput: 30}, []any{"x y"}, nil)
	exc := exception(t, err)
	assert.Equal(t, "subprocess", exc.Module)
	assert.Equal(t, "CalledProcessError", exc.Type)
	assert.Equal(t, []any{int64(3), []any{s, "x y"}, "partial\n", "ne 46\nline 47\nline 48\nline 49\n"}, exc.Args)
	assert.Equal(t, fmt.Sprintf("ne 46\nline 47\nline 48\nline 49\nsubprocess.CalledProcessError: Command '['%s', 'x y']' returned non-zero exit status 3.\n", s),
		exc.Traceback)

	_, err = run(t, Spec{Argv: []string{script(t, `kill -9 $$`)}}, nil, nil)
	exc = exception(t, err)
	assert.Equal(t, int64(-9), exc.Args[0])
	assert.True(t, strings.HasSuffix(exc.Traceback, "' died with <Signals.SIGKILL: 9>.\n"), exc.Traceback)
}

func TestStdinInput(t *testing.T) {
	c := call([]any{int64(1), "a"}, map[string]any{"k": []any{2.5}})
	// Every header and property of the message, as a Celery task's self.request has them.
	c.Request.Headers = map[string]any{"authenticated_user": map[string]any{"username": "admin"}}
	c.Request.Properties.AppID = "1234"
	h := newHandler(t, Spec{Argv: []string{"/bin/cat"}, Input: InputStdin})
	v, err := h(context.Background(), c)
	require.NoError(t, err)
	got := v.(map[string]any)
	assert.Equal(t, map[string]any{"authenticated_user": map[string]any{"username": "admin"}}, got["headers"])
	assert.Equal(t, "1234", got["properties"].(map[string]any)["app_id"])
	delete(got, "properties")
	delete(got, "headers")
	assert.Equal(t, map[string]any{"args": []any{int64(1), "a"}, "kwargs": map[string]any{"k": []any{2.5}},
		"id": "id-1", "task": "test.cmd", "retries": int64(2)}, got)

	// stdin mode takes the argv literally; both fills it in as well.
	s := script(t, `printf '%s\n' "$@"; cat >/dev/null`)
	v, err = newHandler(t, Spec{Argv: []string{s, "{0}", "{{x}}"}, Input: InputStdin})(context.Background(), c)
	require.NoError(t, err)
	assert.Equal(t, "{0}\n{{x}}\n", v.(map[string]any)["stdout"])
	s = script(t, `printf '%s\n' "$@"; head -c 9`)
	v, err = newHandler(t, Spec{Argv: []string{s, "{0}", "{{x}}"}, Input: InputBoth})(context.Background(), c)
	require.NoError(t, err)
	assert.Equal(t, "1\n{x}\n{\"args\": ", v.(map[string]any)["stdout"])

	// A program that never reads a large input neither blocks nor fails the task.
	v, err = newHandler(t, Spec{Argv: []string{script(t, "echo done")}, Input: InputStdin})(context.Background(),
		call([]any{strings.Repeat("x", 1<<20)}, nil))
	require.NoError(t, err)
	assert.Equal(t, "done\n", v.(map[string]any)["stdout"])
}

func TestTemplate(t *testing.T) {
	s := script(t, `printf '%s\n' "$@"`)
	spec := Spec{Argv: []string{s, "{0}", "--steps={steps}", "{1}", "{2}", "{3}", "{4}", "{5}", "{6}",
		"{args_json}", "{kwargs_json}", "{{literal}}", "a}}b{{c"}}
	args := []any{"two words", 2.5, 1e16, true, nil, []any{int64(1), "a"}, int64(-7)}
	v, err := run(t, spec, args, map[string]any{"steps": int64(100)})
	require.NoError(t, err)
	want := []string{"two words", "--steps=100", "2.5", "1e+16", "True", "None", "[1, 'a']", "-7",
		`["two words", 2.5, 1e+16, true, null, [1, "a"], -7]`, `{"steps": 100}`, "{literal}", "a}b{c"}
	assert.Equal(t, strings.Join(want, "\n")+"\n", v.(map[string]any)["stdout"])

	_, err = run(t, spec, args, nil)
	exc := exception(t, err)
	assert.Equal(t, "TypeError", exc.Type)
	assert.Equal(t, []any{"test.cmd() missing required keyword argument: 'steps'"}, exc.Args)
	_, err = run(t, spec, args[:3], map[string]any{"steps": int64(1)})
	exc = exception(t, err)
	assert.Equal(t, "TypeError", exc.Type)
	assert.Equal(t, []any{"test.cmd() missing required positional argument {3}: got 3 positional arguments"}, exc.Args)
}

func TestShellQuoting(t *testing.T) {
	spec := Spec{Argv: []string{`printf '%s\n' {0} {1} {2} | tr a-z A-Z; echo {n}`}, Shell: true}
	v, err := run(t, spec, []any{"a b; echo pwned", "it's", ""}, map[string]any{"n": "$HOME `id`"})
	require.NoError(t, err)
	assert.Equal(t, "A B; ECHO PWNED\nIT'S\n\n$HOME `id`\n", v.(map[string]any)["stdout"])

	assert.Equal(t, "''", shellQuote(""))
	assert.Equal(t, "safe/path-1.0_x@y%z+=:,", shellQuote("safe/path-1.0_x@y%z+=:,"))
	assert.Equal(t, `'a'"'"'b'`, shellQuote("a'b"))
}

func TestPyStr(t *testing.T) {
	for _, c := range []struct {
		v    any
		want string
	}{
		{"s", "s"}, {int64(3), "3"}, {2.0, "2.0"}, {0.1, "0.1"}, {1e22, "1e+22"}, {1.5e-7, "1.5e-07"},
		{123456789.125, "123456789.125"}, {math.Inf(-1), "-inf"}, {math.NaN(), "nan"},
		{true, "True"}, {false, "False"}, {nil, "None"},
		{map[string]any{"b": int64(1), "a": "x"}, "{'a': 'x', 'b': 1}"},
		{[]byte("ab"), "b'ab'"},
		{time.Date(2024, 1, 2, 3, 4, 5, 6000, time.UTC), "2024-01-02 03:04:05.000006+00:00"},
	} {
		assert.Equal(t, c.want, pyStr(c.v), "%#v", c.v)
	}
}

func TestSpecErrors(t *testing.T) {
	for name, c := range map[string]struct {
		spec Spec
		msg  string
	}{
		"no name":     {Spec{Argv: []string{"x"}}, "no task name"},
		"empty argv":  {Spec{Name: "n"}, "empty argv"},
		"shell 2":     {Spec{Name: "n", Argv: []string{"a", "b"}, Shell: true}, "single script"},
		"unmatched {": {Spec{Name: "n", Argv: []string{"x", "{steps"}}, "argv[1]"},
		"single }":    {Spec{Name: "n", Argv: []string{"x", "a}b"}}, "single '}'"},
		"attribute":   {Spec{Name: "n", Argv: []string{"x", "{0.real}"}}, "placeholder {0.real}"},
		"format spec": {Spec{Name: "n", Argv: []string{"x", "{n:3}"}}, "placeholder {n:3}"},
		"input":       {Spec{Name: "n", Argv: []string{"x"}, Input: "file"}, `input "file"`},
		"max_output":  {Spec{Name: "n", Argv: []string{"x"}, MaxOutput: -1}, "max_output"},
		"env":         {Spec{Name: "n", Argv: []string{"x"}, Env: map[string]string{"A=B": "c"}}, `env "A=B"`},
		"pattern":     {Spec{Name: "n", Argv: []string{"x"}, EnvAllow: []string{"[A"}}, "env_allow"},
	} {
		_, err := New(c.spec, Options{})
		require.ErrorIs(t, err, ErrSpec, name)
		assert.Contains(t, err.Error(), c.msg, name)
	}
}

func TestEnvironment(t *testing.T) {
	dir := t.TempDir()
	h, err := New(Spec{Name: "test.env", Argv: []string{"env"}, Dir: dir, EnvAllow: []string{"PATH", "FOO*"},
		Env: map[string]string{"FOO2": "override", "OMP_NUM_THREADS": "4"}},
		Options{Environ: []string{"PATH=/usr/bin:/bin", "FOO1=a", "FOO2=b", "BAR=secret", "HOME=/root"}})
	require.NoError(t, err)
	v, err := h(context.Background(), call(nil, nil))
	require.NoError(t, err)
	got := strings.Split(strings.TrimSpace(v.(map[string]any)["stdout"].(string)), "\n")
	assert.ElementsMatch(t, []string{"PATH=/usr/bin:/bin", "FOO1=a", "FOO2=override", "OMP_NUM_THREADS=4",
		"CCWORKER_TASK_ID=id-1", "CCWORKER_TASK_NAME=test.cmd"}, got)

	v, err = run(t, Spec{Argv: []string{"pwd"}, Dir: dir}, nil, nil)
	require.NoError(t, err)
	real, _ := filepath.EvalSymlinks(dir)
	assert.Contains(t, []string{dir + "\n", real + "\n"}, v.(map[string]any)["stdout"])
}

func TestStartErrors(t *testing.T) {
	_, err := run(t, Spec{Argv: []string{"/nonexistent/prog"}}, nil, nil)
	exc := exception(t, err)
	assert.Equal(t, "builtins", exc.Module)
	assert.Equal(t, "FileNotFoundError", exc.Type)
	assert.Equal(t, []any{int64(2), "No such file or directory", "/nonexistent/prog"}, exc.Args)

	_, err = run(t, Spec{Argv: []string{"no-such-program-ccworker"}}, nil, nil)
	assert.Equal(t, "FileNotFoundError", exception(t, err).Type)

	_, err = run(t, Spec{Argv: []string{"/bin/true"}, Dir: "/nonexistent/dir"}, nil, nil)
	exc = exception(t, err)
	assert.Equal(t, "FileNotFoundError", exc.Type)
	assert.Equal(t, "/nonexistent/dir", exc.Args[2])

	noexec := filepath.Join(t.TempDir(), "noexec")
	require.NoError(t, os.WriteFile(noexec, []byte("#!/bin/sh\n"), 0o600))
	_, err = run(t, Spec{Argv: []string{noexec}}, nil, nil)
	assert.Equal(t, "PermissionError", exception(t, err).Type)
}

// alive reports whether pid is a running (not zombie) process.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err == nil {
		s := string(b)
		if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
			return s[i+2] != 'Z'
		}
		return true
	}
	return syscall.Kill(pid, 0) == nil
}

// readPid waits for a pid file written by a test script.
func readPid(t *testing.T, path string) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := os.ReadFile(path)
		if err == nil && strings.HasSuffix(string(b), "\n") {
			pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
			require.NoError(t, err)
			return pid
		}
		require.True(t, time.Now().Before(deadline), "no pid in %s", path)
		time.Sleep(10 * time.Millisecond)
	}
}

func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("process %d survived its task", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// started runs h in the background and returns a channel for its outcome.
type outcome struct {
	v   any
	err error
	d   time.Duration
}

func startAsync(ctx context.Context, h tasks.Handler, c *tasks.Call) <-chan outcome {
	ch := make(chan outcome, 1)
	go func() {
		t0 := time.Now()
		v, err := h(ctx, c)
		ch <- outcome{v, err, time.Since(t0)}
	}()
	return ch
}

func TestSoftLimitSIGTERM(t *testing.T) {
	dir := t.TempDir()
	marker := filepath.Join(dir, "marker")
	for _, exit := range []int{143, 0} {
		t.Run(strconv.Itoa(exit), func(t *testing.T) {
			_ = os.Remove(marker)
			s := script(t, fmt.Sprintf(`trap 'echo trapped > %s; echo cleaned-up; exit %d' TERM
echo $$ > %s/pid
while :; do sleep 0.05; done`, marker, exit, dir))
			ctx, cancel := context.WithCancelCause(context.Background())
			defer cancel(nil)
			res := startAsync(ctx, newHandler(t, Spec{Argv: []string{s}}), call(nil, nil))
			pid := readPid(t, filepath.Join(dir, "pid"))
			_ = os.Remove(filepath.Join(dir, "pid"))
			cancel(pool.ErrSoftTimeLimitExceeded)
			o := <-res
			b, err := os.ReadFile(marker)
			require.NoError(t, err, "the TERM trap ran")
			assert.Equal(t, "trapped\n", string(b))
			if exit == 0 {
				require.NoError(t, o.err, "exit 0 after SIGTERM is a success")
				assert.Equal(t, "cleaned-up\n", o.v.(map[string]any)["stdout"])
			} else {
				require.ErrorIs(t, o.err, pool.ErrSoftTimeLimitExceeded)
				assert.Contains(t, o.err.Error(), "exit status 143")
			}
			assert.Less(t, o.d, 5*time.Second)
			waitGone(t, pid)
		})
	}
}

func TestSoftLimitThenKill(t *testing.T) {
	dir := t.TempDir()
	s := script(t, fmt.Sprintf(`trap '' TERM; echo $$ > %s/pid; echo "about to hang" >&2
while :; do sleep 0.05; done`, dir))
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	res := startAsync(ctx, newHandler(t, Spec{Argv: []string{s}, KillAfter: 300 * time.Millisecond}), call(nil, nil))
	pid := readPid(t, filepath.Join(dir, "pid"))
	cancel(pool.ErrSoftTimeLimitExceeded)
	o := <-res
	require.ErrorIs(t, o.err, pool.ErrSoftTimeLimitExceeded)
	assert.Contains(t, o.err.Error(), "killed by SIGKILL")
	assert.Contains(t, o.err.Error(), "about to hang")
	assert.GreaterOrEqual(t, o.d, 300*time.Millisecond)
	assert.Less(t, o.d, 5*time.Second)
	waitGone(t, pid)

	// The message's own limits shorten the grace to hard - soft.
	c := call(nil, nil)
	c.Request.TimeLimit, c.Request.SoftTimeLimit = 1200*time.Millisecond, time.Second
	r := &runner{killAfter: DefaultKillAfter}
	assert.Equal(t, 200*time.Millisecond, r.graceFor(c))
}

// TestHardKillTree: any cancellation but the soft limit kills the whole tree at once,
// including a grandchild that ignores SIGTERM.
func TestHardKillTree(t *testing.T) {
	dir := t.TempDir()
	s := script(t, fmt.Sprintf(`sh -c 'trap "" TERM; echo $$ > %[1]s/grandchild; while :; do sleep 0.05; done' &
echo $$ > %[1]s/leader
wait`, dir))
	errTerminated := errors.New("terminated by revoke")
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	res := startAsync(ctx, newHandler(t, Spec{Argv: []string{s}}), call(nil, nil))
	leader, grandchild := readPid(t, filepath.Join(dir, "leader")), readPid(t, filepath.Join(dir, "grandchild"))
	require.True(t, alive(grandchild))
	cancel(errTerminated)
	o := <-res
	require.ErrorIs(t, o.err, errTerminated)
	assert.Contains(t, o.err.Error(), "killed by SIGKILL")
	assert.Less(t, o.d, 2*time.Second)
	waitGone(t, leader)
	waitGone(t, grandchild)
}

// TestNoOrphan: background processes left by a program that exits are killed with its
// group, and the output they hold open does not delay the result.
func TestNoOrphan(t *testing.T) {
	dir := t.TempDir()
	s := script(t, fmt.Sprintf(`sleep 60 & echo $! > %s/bg; echo '{"ok": true}'`, dir))
	t0 := time.Now()
	v, err := run(t, Spec{Argv: []string{s}}, nil, nil)
	require.NoError(t, err)
	assert.Equal(t, map[string]any{"ok": true}, v)
	assert.Less(t, time.Since(t0), ioWait)
	waitGone(t, readPid(t, filepath.Join(dir, "bg")))
}

// TestEscapedProcess: a process that left the group cannot be killed with it, but it does
// not hold the task past ioWait by keeping the output pipe open.
func TestEscapedProcess(t *testing.T) {
	setsid, err := exec.LookPath("setsid")
	require.NoError(t, err, "setsid (util-linux, essential on Debian) starts the escaping process")
	dir := t.TempDir()
	s := script(t, fmt.Sprintf(`%[1]s sh -c 'echo $$ > %[2]s/esc; exec sleep 30' &
while [ ! -s %[2]s/esc ]; do sleep 0.01; done; echo started`, setsid, dir))
	t0 := time.Now()
	v, err := run(t, Spec{Argv: []string{s}}, nil, nil)
	require.NoError(t, err)
	pid := readPid(t, filepath.Join(dir, "esc"))
	defer func() { _ = syscall.Kill(pid, syscall.SIGKILL) }()
	assert.Equal(t, "started\n", v.(map[string]any)["stdout"])
	assert.Less(t, time.Since(t0), ioWait+3*time.Second)
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	require.NoError(t, err, "the escaped process is out of the group's reach")
	assert.NotContains(t, string(stat), ") Z ", "and still running, not a zombie")
}

func TestCancelledBeforeStart(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancelCause(context.Background())
	cause := errors.New("shutting down")
	cancel(cause)
	_, err := newHandler(t, Spec{Argv: []string{"/usr/bin/touch", filepath.Join(dir, "ran")}})(ctx, call(nil, nil))
	require.ErrorIs(t, err, cause)
	assert.NoFileExists(t, filepath.Join(dir, "ran"))
}

// TestConcurrent runs many commands at once (for the race detector).
func TestConcurrent(t *testing.T) {
	h := newHandler(t, Spec{Argv: []string{"/bin/echo", "{0}"}})
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := h(context.Background(), call([]any{int64(i)}, nil))
			assert.NoError(t, err)
			assert.Equal(t, int64(i), v)
		}()
	}
	wg.Wait()
}
