// Package testharness is what the integration tests of interop, slurmtest, bench, chaos and
// clustertest share to drive the real ccworker binary: build it once, run it as a
// subprocess (Start) or as a worker under load with its log in a file (StartLogged) and
// wait for what it logs, publish through Python Celery's client (scripts/celery_client.py), count
// the messages a queue holds and read the result documents. The services themselves
// (URLs, fresh names and databases) come from internal/testenv.
package testharness

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Python is Debian's interpreter, the one with python3-celery and python3-pymongo.
const Python = "/usr/bin/python3"

// RepoRoot is the module's root directory, found from this source file.
func RepoRoot() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("testharness: cannot locate the module root")
	}
	return filepath.Abs(filepath.Join(filepath.Dir(file), "..", ".."))
}

// Build compiles cmd/ccworker into a new temporary directory and returns the binary's
// path and a function that removes the directory. The directory is world-readable, so
// that processes of other users (Slurm jobs) can run the binary.
func Build() (binary string, remove func(), err error) {
	return build(nil)
}

// BuildRelease is Build with `make build`'s flags (CGO_ENABLED=0, -trimpath): the binary
// that ships, for the fault tests.
func BuildRelease() (binary string, remove func(), err error) {
	return build([]string{"CGO_ENABLED=0"}, "-trimpath")
}

func build(env []string, flags ...string) (binary string, remove func(), err error) {
	root, err := RepoRoot()
	if err != nil {
		return "", nil, err
	}
	dir, err := os.MkdirTemp("", "ccworker-test-")
	if err != nil {
		return "", nil, err
	}
	remove = func() { _ = os.RemoveAll(dir) }
	_ = os.Chmod(dir, 0o755)
	binary = filepath.Join(dir, "ccworker")
	args := append(append([]string{"build"}, flags...), "-o", binary, "./cmd/ccworker")
	cmd := exec.Command("go", args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		remove()
		return "", func() {}, fmt.Errorf("go build ./cmd/ccworker: %v\n%s", err, out)
	}
	return binary, remove, nil
}

// CheckCelery says why the Python Celery client cannot run, or nil.
func CheckCelery() error {
	if out, err := exec.Command(Python, "-c", "import celery, pymongo").CombinedOutput(); err != nil {
		return fmt.Errorf("%s cannot import celery and pymongo: %v: %s (apt-get install python3-celery python3-pymongo)",
			Python, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// WaitFor polls cond every interval until it holds (true) or timeout passes (false).
func WaitFor(timeout, interval time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(interval)
	}
}

// Tail returns the last n lines of s (a final newline ends a line, it does not start
// one), saying how many were left out.
func Tail(s string, n int) string {
	l := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	if len(l) > n {
		l = append([]string{fmt.Sprintf("[... %d lines]", len(l)-n)}, l[len(l)-n:]...)
	}
	return strings.Join(l, "\n")
}

// Buffer collects a subprocess's output: the exec package copies into it from its own
// goroutines while the test reads it.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Proc is a running ccworker (or any command) whose output (stdout and stderr together)
// the test reads.
type Proc struct {
	Cmd  *exec.Cmd
	out  Buffer
	done chan struct{} // closed when the process has exited and its output is copied
	err  error         // cmd.Wait's error, valid after done
}

// Start starts cmd (in a fresh empty directory unless cmd.Dir is set, so that no stray
// ./celeryconfig.py is read); the test's cleanup kills it if it is still running and logs
// the last lines of its output if the test failed.
func Start(t testing.TB, cmd *exec.Cmd) *Proc {
	t.Helper()
	p := &Proc{Cmd: cmd, done: make(chan struct{})}
	if cmd.Dir == "" {
		cmd.Dir = t.TempDir()
	}
	cmd.Stdout, cmd.Stderr = &p.out, &p.out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", cmd, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		if !p.Exited() {
			_ = cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", strings.Join(cmd.Args, " "), Tail(p.Output(), 200))
		}
	})
	return p
}

// Output is everything the process wrote so far.
func (p *Proc) Output() string { return p.out.String() }

// Exited says whether the process has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// WaitLog waits until the output contains substr; it fails the test on timeout or if the
// process exits first.
func (p *Proc) WaitLog(t testing.TB, substr string, timeout time.Duration) {
	t.Helper()
	p.WaitLogFunc(t, substr, timeout, func(out string) bool { return strings.Contains(out, substr) })
}

// WaitLogFunc waits until ok(output) holds; what names the condition in the failure.
func (p *Proc) WaitLogFunc(t testing.TB, what string, timeout time.Duration, ok func(string) bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		out := p.Output()
		if ok(out) {
			return
		}
		if p.Exited() {
			t.Fatalf("%s exited (%v) before logging %q; output:\n%s", p.Cmd.Path, p.err, what, p.Output())
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not log %q within %v; output:\n%s", p.Cmd.Path, what, timeout, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Signal sends sig to the process.
func (p *Proc) Signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	if err := p.Cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %v: %v", sig, err)
	}
}

// Wait returns the exit code once the process has exited (-1 when a signal ended it), or
// ok=false after timeout.
func (p *Proc) Wait(timeout time.Duration) (code int, ok bool) {
	select {
	case <-p.done:
	case <-time.After(timeout):
		return 0, false
	}
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		return ee.ExitCode(), true
	}
	if p.err != nil {
		return -1, true
	}
	return 0, true
}

// Stop sends SIGTERM and requires exit code 0 within 30 s.
func (p *Proc) Stop(t testing.TB) {
	t.Helper()
	p.Signal(t, syscall.SIGTERM)
	code, ok := p.Wait(30 * time.Second)
	if !ok {
		t.Fatalf("%s did not exit within 30 s of SIGTERM; output:\n%s", p.Cmd.Path, p.Output())
	}
	if code != 0 {
		t.Fatalf("%s exit code %d after SIGTERM; output:\n%s", p.Cmd.Path, code, p.Output())
	}
}
