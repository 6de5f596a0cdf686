//go:build !(linux || darwin || dragonfly || freebsd || netbsd || openbsd)

package atkit

import "os"

// On systems without flock the port is not locked: TIOCEXCL (where
// go.bug.st/serial sets it) is the only guard.

func openNoCTTY(name string) (*os.File, error) { return os.Open(os.DevNull) }

func tryLock(*os.File) (held bool, err error) { return false, nil }

func lockHolder(*os.File) int { return 0 }

func processName(int) string { return "" }
