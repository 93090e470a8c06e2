//go:build unix

package command

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

const supported = true

// sysProcAttr puts the program in a new process group whose id is its pid.
func sysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

// signalGroup sends sig to every process of the group pgid; a group that is already
// gone is not an error.
func signalGroup(pgid int, sig syscall.Signal) error {
	if err := syscall.Kill(-pgid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill -%d %d: %w", int(sig), pgid, err)
	}
	return nil
}

// returnCode is Python's Popen.returncode: the exit status, or -N after signal N.
func returnCode(ps *os.ProcessState, err error) int {
	if ps == nil {
		if err != nil {
			return -1
		}
		return 0
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return -int(ws.Signal())
	}
	return ps.ExitCode()
}

var signalNames = map[syscall.Signal]string{
	syscall.SIGHUP: "SIGHUP", syscall.SIGINT: "SIGINT", syscall.SIGQUIT: "SIGQUIT",
	syscall.SIGILL: "SIGILL", syscall.SIGTRAP: "SIGTRAP", syscall.SIGABRT: "SIGABRT",
	syscall.SIGBUS: "SIGBUS", syscall.SIGFPE: "SIGFPE", syscall.SIGKILL: "SIGKILL",
	syscall.SIGUSR1: "SIGUSR1", syscall.SIGSEGV: "SIGSEGV", syscall.SIGUSR2: "SIGUSR2",
	syscall.SIGPIPE: "SIGPIPE", syscall.SIGALRM: "SIGALRM", syscall.SIGTERM: "SIGTERM",
	syscall.SIGXCPU: "SIGXCPU", syscall.SIGXFSZ: "SIGXFSZ",
}

// signalName is the signal's C name (SIGTERM), or "signal N".
func signalName(n int) string {
	if s, ok := signalNames[syscall.Signal(n)]; ok {
		return s
	}
	return fmt.Sprintf("signal %d", n)
}

// signalRepr is repr(signal.Signals(n)) as CalledProcessError.__str__ writes it.
func signalRepr(n int) string {
	if s, ok := signalNames[syscall.Signal(n)]; ok {
		return fmt.Sprintf("<Signals.%s: %d>", s, n)
	}
	return fmt.Sprintf("unknown signal %d", n)
}
