package command

import (
	"syscall"
	"unsafe"
)

// waitExited blocks until process pid has exited without reaping it (waitid with
// WNOWAIT), so that its pid, the id of its process group, stays reserved.
func waitExited(pid int) error {
	const pPID = 1 // P_PID
	var siginfo [16]uint64
	for {
		_, _, errno := syscall.Syscall6(syscall.SYS_WAITID, pPID, uintptr(pid),
			uintptr(unsafe.Pointer(&siginfo[0])), syscall.WEXITED|syscall.WNOWAIT, 0, 0)
		if errno == syscall.EINTR {
			continue
		}
		if errno != 0 {
			return errno
		}
		return nil
	}
}
