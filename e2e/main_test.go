//go:build linux

package e2e

import (
	"os"
	"syscall"
	"testing"
	"unsafe"
)

// Roles of a re-executed test binary.
const (
	envRole  = "E2E_ROLE"
	roleEtcd = "etcd"
	roleNode = "node"
)

func TestMain(m *testing.M) {
	switch os.Getenv(envRole) {
	case roleEtcd:
		os.Exit(runEtcdMember())
	case roleNode:
		os.Exit(runNode())
	}
	os.Exit(m.Run())
}

// mono reads CLOCK_MONOTONIC, which every process on the machine shares,
// so instants taken in different processes compare.
func mono() int64 {
	var ts syscall.Timespec
	if _, _, e := syscall.Syscall(syscall.SYS_CLOCK_GETTIME, 1 /* CLOCK_MONOTONIC */, uintptr(unsafe.Pointer(&ts)), 0); e != 0 {
		panic(e)
	}
	return ts.Nano()
}
