// Package fleet runs many gateways on one machine against one real
// mosquitto: each agent with its own emulated modem (bin/modemsim on a
// pty) and plugin, at a steady reading rate, and measures what each costs
// from /proc. It also holds the mosquitto launcher the air-bytes
// benchmarks share.
package fleet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// Mosquitto is a running mosquitto requiring client certificates from the
// CA in its directory (devpki.WriteFiles' names: ca.pem, server.pem,
// server.key).
type Mosquitto struct {
	Addr string // 127.0.0.1:port
	cmd  *exec.Cmd
	done chan struct{}
	log  *os.File
}

// MosquittoBinary finds mosquitto on PATH or in /usr/sbin (Debian puts it
// there, outside a user's PATH).
func MosquittoBinary() (string, error) {
	if p, err := exec.LookPath("mosquitto"); err == nil {
		return p, nil
	}
	if _, err := os.Stat("/usr/sbin/mosquitto"); err == nil {
		return "/usr/sbin/mosquitto", nil
	}
	return "", errors.New("mosquitto is not installed: run make deps (Debian package mosquitto)")
}

// StartMosquitto runs mosquitto on a free loopback port with the PKI files
// in dir and waits until it listens. maxConns caps nothing when 0; the
// broker allows as many clients as the fleet has.
func StartMosquitto(ctx context.Context, dir string) (*Mosquitto, error) {
	bin, err := MosquittoBinary()
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	// mosquitto may drop to its own user: the directory must be readable.
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, fmt.Errorf("mosquitto dir: %w", err)
	}
	user := ""
	if os.Geteuid() == 0 {
		user = "user root\n"
	}
	conf := filepath.Join(dir, "mosquitto.conf")
	text := fmt.Sprintf(`%slistener %d 127.0.0.1
cafile %s
certfile %s
keyfile %s
require_certificate true
use_identity_as_username true
allow_anonymous false
log_dest stderr
log_type error
log_type warning
`, user, port, filepath.Join(dir, "ca.pem"), filepath.Join(dir, "server.pem"), filepath.Join(dir, "server.key"))
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		return nil, fmt.Errorf("mosquitto config: %w", err)
	}
	logf, err := os.Create(filepath.Join(dir, "mosquitto.log"))
	if err != nil {
		return nil, fmt.Errorf("mosquitto log: %w", err)
	}
	m := &Mosquitto{Addr: fmt.Sprintf("127.0.0.1:%d", port), cmd: exec.Command(bin, "-c", conf), done: make(chan struct{}), log: logf}
	m.cmd.Stdout, m.cmd.Stderr = logf, logf
	if err := m.cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("mosquitto: %w", err)
	}
	go func() { m.cmd.Wait(); close(m.done) }()
	if err := waitDial(ctx, m.Addr, 15*time.Second, m.done); err != nil {
		m.Stop()
		log, _ := os.ReadFile(logf.Name())
		return nil, fmt.Errorf("mosquitto on %s: %w\n%s", m.Addr, err, log)
	}
	return m, nil
}

// PID is the broker's process id.
func (m *Mosquitto) PID() int { return m.cmd.Process.Pid }

// Stop ends the broker (SIGTERM, then SIGKILL after 10 s) and waits.
func (m *Mosquitto) Stop() {
	m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.done:
	case <-time.After(10 * time.Second):
		m.cmd.Process.Kill()
		<-m.done
	}
	m.log.Close()
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// waitDial waits until addr accepts a connection, the process ends (exited
// closes) or within passes.
func waitDial(ctx context.Context, addr string, within time.Duration, exited <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	for {
		d := net.Dialer{Timeout: time.Second}
		if c, err := d.DialContext(ctx, "tcp", addr); err == nil {
			c.Close()
			return nil
		}
		select {
		case <-exited:
			return errors.New("exited before listening")
		case <-ctx.Done():
			return fmt.Errorf("not listening after %s: %w", within, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}
