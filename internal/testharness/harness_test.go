package testharness

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestProcLifecycle(t *testing.T) {
	// A process that logs, then exits 0 on SIGTERM, as ccworker's warm shutdown does.
	p := Start(t, exec.Command("sh", "-c", `trap 'echo bye; exit 0' TERM; echo up; while :; do sleep 0.05; done`))
	p.WaitLog(t, "up", 10*time.Second)
	if p.Exited() {
		t.Fatal("exited early")
	}
	if p.Cmd.Dir == "" {
		t.Error("no working directory of its own")
	}
	p.Stop(t)
	if !strings.Contains(p.Output(), "bye") {
		t.Errorf("output %q", p.Output())
	}

	// A signal that ends the process: exit code -1; a deadline that passes: ok=false.
	q := Start(t, exec.Command("sleep", "30"))
	if _, ok := q.Wait(50 * time.Millisecond); ok {
		t.Fatal("Wait returned before the process ended")
	}
	q.Signal(t, syscall.SIGKILL)
	if code, ok := q.Wait(10 * time.Second); !ok || code != -1 {
		t.Errorf("after SIGKILL: code %d, ok %v", code, ok)
	}
}

func TestWaitForAndTail(t *testing.T) {
	n := 0
	if !WaitFor(10*time.Second, time.Millisecond, func() bool { n++; return n == 3 }) {
		t.Error("WaitFor gave up")
	}
	if WaitFor(20*time.Millisecond, time.Millisecond, func() bool { return false }) {
		t.Error("WaitFor held a false condition")
	}
	if got := Tail("a\nb\nc", 2); got != "[... 1 lines]\nb\nc" {
		t.Errorf("Tail = %q", got)
	}
	if got := Tail("a\nb\nc\n", 2); got != "[... 1 lines]\nb\nc" {
		t.Errorf("Tail = %q", got)
	}
	if got := Tail("a", 2); got != "a" {
		t.Errorf("Tail = %q", got)
	}
}

func TestNewUUID(t *testing.T) {
	re := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	if a, b := NewUUID(), NewUUID(); !re.MatchString(a) || a == b {
		t.Errorf("NewUUID: %q %q", a, b)
	}
}

func TestStartLogged(t *testing.T) {
	dir := t.TempDir()
	var mu sync.Mutex
	var lines []string
	cmd := exec.Command("sh", "-c", "echo out; echo one >&2; echo two >&2; exit 3")
	p, err := StartLogged(cmd, LogOptions{LogPath: filepath.Join(dir, "w.log"), PidDir: dir, PidNote: "w",
		OnLine: func(b []byte) { mu.Lock(); lines = append(lines, string(b)); mu.Unlock() }})
	if err != nil {
		t.Fatal(err)
	}
	if code, ok := p.Wait(30 * time.Second); !ok || code != 3 {
		t.Fatalf("Wait = %d, %v", code, ok)
	}
	log, _ := os.ReadFile(p.LogPath)
	if !strings.Contains(string(log), "out\n") || !strings.Contains(string(log), "one\ntwo\n") {
		t.Errorf("log file %q", log)
	}
	mu.Lock()
	if strings.Join(lines, ",") != "one,two" || p.Output() != "one\ntwo\n" {
		t.Errorf("lines %q, output %q", lines, p.Output())
	}
	mu.Unlock()
	if left, _ := filepath.Glob(filepath.Join(dir, "[0-9]*")); len(left) != 0 {
		t.Errorf("pid files left: %v", left)
	}

	cmd = exec.Command("sleep", "60")
	p, err = StartLogged(cmd, LogOptions{LogPath: filepath.Join(dir, "s.log"), PidDir: dir, PidNote: "s"})
	if err != nil {
		t.Fatal(err)
	}
	pidFile := filepath.Join(dir, strconv.Itoa(cmd.Process.Pid))
	if b, err := os.ReadFile(pidFile); err != nil || string(b) != "s\n" {
		t.Errorf("pid file: %q, %v", b, err)
	}
	p.Kill()
	if code, ok := p.Wait(time.Second); !ok || code != 128+9 || !p.Exited() {
		t.Errorf("after Kill: %d, %v", code, ok)
	}
}

func TestWaitProgress(t *testing.T) {
	n := 0
	if !WaitProgress(time.Second, time.Millisecond, func() int { n++; return n }, func() bool { return n > 50 }) {
		t.Error("gave up while progressing")
	}
	if WaitProgress(50*time.Millisecond, time.Millisecond, func() int { return 1 }, func() bool { return false }) {
		t.Error("did not give up on a stall")
	}
}

func TestLogDir(t *testing.T) {
	dir, done, err := LogDir("harness-test", false)
	if err != nil {
		t.Fatal(err)
	}
	done(0)
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("%s left after a passing run: %v", dir, err)
	}
	dir, done, err = LogDir("harness-test", false)
	if err != nil {
		t.Fatal(err)
	}
	done(1)
	if _, err := os.Stat(dir); err != nil {
		t.Errorf("%s not kept after a failed run: %v", dir, err)
	}
	_ = os.RemoveAll(dir)
}
