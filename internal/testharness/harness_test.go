package testharness

import (
	"os/exec"
	"regexp"
	"strings"
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
