//go:build !linux

package sdk

import "os/exec"

// setParentDeathSignal does nothing where the OS has no parent-death signal;
// there a plugin outlives a killed agent until its service manager stops it.
func setParentDeathSignal(*exec.Cmd) {}
