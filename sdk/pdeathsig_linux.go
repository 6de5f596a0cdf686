package sdk

import (
	"os/exec"
	"syscall"
)

// setParentDeathSignal asks Linux to send the plugin SIGTERM when the agent
// dies, so a killed agent does not leave a plugin holding the serial port;
// Serve answers SIGTERM by stopping the modem. The signal is tied to the OS
// thread that started the process, which only ends early if a goroutine
// locked to it exits, and nothing on the agent's launch path locks threads.
func setParentDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}
