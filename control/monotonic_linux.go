package control

import (
	"syscall"
	"time"
	"unsafe"
)

// monotonicNow returns CLOCK_MONOTONIC in seconds, Python's time.monotonic(): the clock
// LimitedSet timestamps (and so mingle hello revoked maps) are expressed in.
func monotonicNow() float64 {
	var ts syscall.Timespec
	const clockMonotonic = 1
	if _, _, e := syscall.Syscall(syscall.SYS_CLOCK_GETTIME, clockMonotonic, uintptr(unsafe.Pointer(&ts)), 0); e != 0 {
		return float64(time.Now().UnixNano()) / 1e9
	}
	return float64(ts.Sec) + float64(ts.Nsec)/1e9
}
