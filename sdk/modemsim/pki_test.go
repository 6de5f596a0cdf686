package modemsim

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cellgate/cellgate/internal/devpki"
	"github.com/cellgate/cellgate/internal/testutil"
)

// newTestCA returns a development CA (internal/devpki) made for one test,
// with P-521 keys because the seed's server runs with -named_curve
// secp521r1. devpki is no driver code: the emulator's independence from
// sdk/at and plugins/ is untouched.
func newTestCA(t testing.TB, name string) *devpki.CA {
	t.Helper()
	ca, err := devpki.NewCA(devpki.P521, name)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// issue returns a certificate from ca as l describes, and its key.
func issue(t testing.TB, ca *devpki.CA, l devpki.Leaf) devpki.Identity {
	t.Helper()
	id, err := ca.Issue(l)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// sServer is a running `openssl s_server`.
type sServer struct {
	port   int
	stderr *testutil.SyncBuffer
}

func (s *sServer) log() string { return s.stderr.String() }

// startSServer runs `openssl s_server` with the seed's options on a free
// loopback port, with clientCA as -CAfile, and waits until it listens
// ("ACCEPT" on its stdout). It is killed by PID and reaped at cleanup.
func startSServer(t testing.TB, clientCA []byte, server devpki.Identity, extra ...string) *sServer {
	t.Helper()
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Fatalf("openssl is required (make deps installs it): %v", err)
	}
	dir := t.TempDir()
	for name, b := range map[string][]byte{"ca.pem": clientCA, "server.pem": server.CertPEM, "server.key": server.KeyPEM} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for attempt := 0; ; attempt++ {
		port := testutil.FreePort(t)
		args := append([]string{"s_server", "-accept", "127.0.0.1:" + strconv.Itoa(port),
			"-tls1_2", "-Verify", "10", "-verify_return_error", "-named_curve", "secp521r1",
			"-CAfile", filepath.Join(dir, "ca.pem"), "-cert", filepath.Join(dir, "server.pem"),
			"-key", filepath.Join(dir, "server.key")}, extra...)
		cmd := exec.Command(openssl, args...)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		srv := &sServer{port: port, stderr: &testutil.SyncBuffer{}}
		cmd.Stderr = srv.stderr
		if err := cmd.Start(); err != nil {
			t.Fatalf("start openssl s_server: %v", err)
		}
		ready := make(chan bool, 1)
		drained := make(chan struct{})
		go func() {
			defer close(drained)
			sc := bufio.NewScanner(stdout)
			signalled := false
			for sc.Scan() {
				if !signalled && strings.Contains(sc.Text(), "ACCEPT") {
					ready <- true
					signalled = true
				}
			}
			if !signalled {
				ready <- false
			}
		}()
		stop := func() {
			cmd.Process.Kill()
			<-drained
			cmd.Wait()
		}
		timer := time.NewTimer(waitTimeout)
		var ok bool
		select {
		case ok = <-ready:
		case <-timer.C:
		}
		timer.Stop()
		if ok {
			t.Cleanup(stop)
			return srv
		}
		stop()
		if attempt == 2 {
			t.Fatalf("openssl s_server did not start listening: %s", srv.log())
		}
	}
}
