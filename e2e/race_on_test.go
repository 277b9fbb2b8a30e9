//go:build race

package e2e

// raceBuild is true when the race detector is on: it slows every process
// of the suite several times over, so timing slack is scaled with it.
const raceBuild = true
