// Package sdnotify speaks the service manager's notification protocol
// (sd_notify(3)): a datagram of newline-separated VAR=value assignments sent
// to the Unix socket named by $NOTIFY_SOCKET. cellgate's unit is
// Type=notify: it sends READY=1 once it takes readings, WATCHDOG=1 from its
// health loop, RELOADING=1 and READY=1 around a reload, STOPPING=1 on its
// way out.
//
// RELOADING=1 is sent without MONOTONIC_USEC: that pairing is what
// Type=notify-reload (systemd 253+) needs, and the unit uses Type=notify with
// ExecReload so it runs on Debian 12's systemd 252.
//
// Outside systemd (no $NOTIFY_SOCKET) every call does nothing, so the agent
// runs the same by hand, in a container or under another supervisor.
package sdnotify

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// The messages cellgate sends; see sd_notify(3).
const (
	Ready     = "READY=1"
	Reloading = "RELOADING=1"
	Stopping  = "STOPPING=1"
	Watchdog  = "WATCHDOG=1"
)

// Notifier sends notifications to the service manager. The zero value, and
// a nil *Notifier, send nothing.
type Notifier struct {
	socket string // $NOTIFY_SOCKET: a path, or "@name" for an abstract socket
}

// FromEnv returns the Notifier for $NOTIFY_SOCKET and the watchdog interval
// the manager asked for ($WATCHDOG_USEC, when $WATCHDOG_PID is unset or this
// process), 0 when none. It then removes NOTIFY_SOCKET, WATCHDOG_USEC and
// WATCHDOG_PID from the environment, as sd_notify's unset_environment does,
// so child processes (the modem plugin) do not inherit them.
func FromEnv() (*Notifier, time.Duration) {
	n := &Notifier{socket: os.Getenv("NOTIFY_SOCKET")}
	interval := watchdogInterval(os.Getenv("WATCHDOG_USEC"), os.Getenv("WATCHDOG_PID"), os.Getpid())
	for _, k := range []string{"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"} {
		os.Unsetenv(k)
	}
	return n, interval
}

// watchdogInterval parses the watchdog variables for process pid.
func watchdogInterval(usec, forPID string, pid int) time.Duration {
	if usec == "" {
		return 0
	}
	if forPID != "" && forPID != strconv.Itoa(pid) {
		return 0
	}
	us, err := strconv.ParseUint(usec, 10, 63)
	if err != nil || us == 0 {
		return 0
	}
	return time.Duration(us) * time.Microsecond
}

// Enabled says whether notifications go anywhere.
func (n *Notifier) Enabled() bool { return n != nil && n.socket != "" }

// Notify sends the assignments (Ready, "STATUS=…", …) in one datagram. It
// returns nil without sending when the Notifier is not Enabled. An error
// means the manager did not get the message; the caller logs it and goes
// on: a lost READY shows up as a start timeout, a lost WATCHDOG as a restart.
func (n *Notifier) Notify(assignments ...string) error {
	if !n.Enabled() {
		return nil
	}
	if strings.HasPrefix(n.socket, "vsock:") {
		return errors.New("sd_notify: vsock NOTIFY_SOCKET is not supported")
	}
	// A name starting with "@" is an abstract socket; the net package
	// translates the "@" itself.
	addr := &net.UnixAddr{Name: n.socket, Net: "unixgram"}
	conn, err := net.DialUnix("unixgram", nil, addr)
	if err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(strings.Join(assignments, "\n"))); err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	return nil
}

// Status is the STATUS= assignment: one line systemctl status shows.
func Status(text string) string {
	return "STATUS=" + strings.ReplaceAll(text, "\n", " ")
}
