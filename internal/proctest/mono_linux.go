package proctest

import (
	"syscall"
	"unsafe"
)

// Mono reads CLOCK_MONOTONIC, in nanoseconds, which every process on the
// machine shares, so instants taken in different processes compare.
func Mono() int64 {
	var ts syscall.Timespec
	if _, _, e := syscall.Syscall(syscall.SYS_CLOCK_GETTIME, 1 /* CLOCK_MONOTONIC */, uintptr(unsafe.Pointer(&ts)), 0); e != 0 {
		panic(e)
	}
	return ts.Nano()
}
