package sdnotify

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// listen opens a unixgram socket as the service manager does and returns
// its NOTIFY_SOCKET name and a function reading the next datagram.
func listen(t *testing.T, name string) func() string {
	t.Helper()
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatalf("listen %s: %v", name, err)
	}
	t.Cleanup(func() { conn.Close() })
	return func() string {
		t.Helper()
		buf := make([]byte, 4096)
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, _, err := conn.ReadFromUnix(buf)
		if err != nil {
			t.Fatalf("read notification: %v", err)
		}
		return string(buf[:n])
	}
}

// The manager receives one datagram per Notify, assignments joined by
// newlines, on a path socket and on an abstract one; FromEnv leaves nothing
// behind for child processes.
func TestNotifyReachesTheManagersSocket(t *testing.T) {
	for name, socket := range map[string]string{
		"path":     filepath.Join(t.TempDir(), "notify"),
		"abstract": fmt.Sprintf("@cellgate-sdnotify-test-%d", os.Getpid()),
	} {
		t.Run(name, func(t *testing.T) {
			next := listen(t, socket)
			t.Setenv("NOTIFY_SOCKET", socket)
			t.Setenv("WATCHDOG_USEC", "30000000")
			t.Setenv("WATCHDOG_PID", fmt.Sprint(os.Getpid()))
			n, interval := FromEnv()
			if interval != 30*time.Second {
				t.Errorf("watchdog interval = %v, want 30s", interval)
			}
			for _, k := range []string{"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"} {
				if v, ok := os.LookupEnv(k); ok {
					t.Errorf("%s=%q still set: the plugin would inherit it", k, v)
				}
			}
			if err := n.Notify(Ready, Status("taking readings")); err != nil {
				t.Fatalf("Notify: %v", err)
			}
			if got, want := next(), "READY=1\nSTATUS=taking readings"; got != want {
				t.Errorf("datagram = %q, want %q", got, want)
			}
			if err := n.Notify(Watchdog); err != nil {
				t.Fatalf("Notify: %v", err)
			}
			if got := next(); got != "WATCHDOG=1" {
				t.Errorf("datagram = %q, want WATCHDOG=1", got)
			}
		})
	}
}

// Without NOTIFY_SOCKET nothing is sent and nothing fails: the agent runs
// the same by hand.
func TestNotifyWithoutManagerDoesNothing(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	n, interval := FromEnv()
	if n.Enabled() || interval != 0 {
		t.Errorf("FromEnv() = enabled %v, interval %v; want neither", n.Enabled(), interval)
	}
	if err := n.Notify(Ready); err != nil {
		t.Errorf("Notify = %v, want nil", err)
	}
	var none *Notifier
	if err := none.Notify(Ready); err != nil {
		t.Errorf("nil Notify = %v, want nil", err)
	}
}

// A socket that is gone is an error the caller can log, not a panic.
func TestNotifyToMissingSocketFails(t *testing.T) {
	n := &Notifier{socket: filepath.Join(t.TempDir(), "gone")}
	if err := n.Notify(Ready); err == nil || !strings.Contains(err.Error(), "sd_notify") {
		t.Errorf("Notify = %v, want an sd_notify error", err)
	}
}

func TestWatchdogIntervalIsForThisProcessOnly(t *testing.T) {
	for _, c := range []struct {
		name, usec, pid string
		want            time.Duration
	}{
		{"unset", "", "", 0},
		{"for us", "20000000", "42", 20 * time.Second},
		{"no pid given", "1500000", "", 1500 * time.Millisecond},
		{"for another process", "20000000", "43", 0},
		{"zero", "0", "42", 0},
		{"garbage", "soon", "42", 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := watchdogInterval(c.usec, c.pid, 42); got != c.want {
				t.Errorf("watchdogInterval(%q, %q) = %v, want %v", c.usec, c.pid, got, c.want)
			}
		})
	}
}
