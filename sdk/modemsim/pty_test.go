package modemsim

import (
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cellgate/cellgate/internal/testutil"
)

// waitSlaveQueue waits until cond holds for the number of bytes waiting in
// the slave's input queue.
func waitSlaveQueue(t *testing.T, m *Modem, what string, cond func(int) bool) {
	t.Helper()
	testutil.Eventually(t, waitTimeout, what, func() bool {
		n, err := unix.IoctlGetInt(m.pty.slaveFD, unix.TIOCINQ)
		if err != nil {
			t.Fatal(err)
		}
		return cond(n)
	})
}

// Output the last client never read is gone when the next client opens,
// as with a real tty whose last close flushes its buffers.
func TestUnreadOutputIsDiscardedAtLastClose(t *testing.T) {
	m := startModem(t, Config{})
	fd, err := unix.Open(m.Path(), unix.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := unix.Write(fd, []byte("AT+CGMM\r")); err != nil {
		t.Fatal(err)
	}
	const answer = len("AT+CGMM\r") + len("\r\nSIMCOM_SIM7600G-H\r\n\r\nOK\r\n")
	waitSlaveQueue(t, m, "the unread answer", func(n int) bool { return n == answer })
	unix.Close(fd)
	waitSlaveQueue(t, m, "the flush at last close", func(n int) bool { return n == 0 })
	h := openHost(t, m.Path(), 115200)
	h.ok("AT")
	if got := string(h.rawFrom(0)); got != "AT\r\r\nOK\r\n" {
		t.Fatalf("the new client read %q, want only its own exchange", got)
	}
}

// A client that dies holding TIOCEXCL (SIGKILL skips go.bug.st/serial's
// Close) must not leave the port busy: the emulator clears the flag when
// the client's descriptor closes, as a real tty's last close does.
func TestExclusiveFlagClearedWhenClientDies(t *testing.T) {
	m := startModem(t, Config{})
	fd, err := unix.Open(m.Path(), unix.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.IoctlSetInt(fd, unix.TIOCEXCL, 0); err != nil {
		t.Fatal(err)
	}
	if v, err := unix.IoctlGetInt(m.pty.slaveFD, unix.TIOCGEXCL); err != nil || v == 0 {
		t.Fatalf("TIOCGEXCL = %d, %v; want the flag set", v, err)
	}
	unix.Close(fd) // what the kernel does for a killed process
	testutil.Eventually(t, waitTimeout, "TIOCEXCL cleared after the client closed", func() bool {
		v, err := unix.IoctlGetInt(m.pty.slaveFD, unix.TIOCGEXCL)
		if err != nil {
			t.Fatal(err)
		}
		return v == 0
	})
	// And the port works for the next client.
	h := openHost(t, m.Path(), 115200)
	h.ok("ATE0")
}
