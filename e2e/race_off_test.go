//go:build !race

package e2e

// raceBuild is true when the race detector is on.
const raceBuild = false
