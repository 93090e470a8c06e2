//go:build !unix

package command

import (
	"errors"
	"os"
	"strconv"
	"syscall"
)

// Command tasks need process groups.
const supported = false

func sysProcAttr() *syscall.SysProcAttr { return nil }

func signalGroup(int, syscall.Signal) error { return errors.ErrUnsupported }

func returnCode(ps *os.ProcessState, _ error) int {
	if ps == nil {
		return -1
	}
	return ps.ExitCode()
}

func signalName(n int) string { return "signal " + strconv.Itoa(n) }

func signalRepr(n int) string { return "unknown signal " + strconv.Itoa(n) }
