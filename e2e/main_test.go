//go:build linux

package e2e

import (
	"os"
	"testing"
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
