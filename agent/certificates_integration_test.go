package agent_test

// Encrypted client keys end to end: a key encrypted by the real openssl
// CLI (PKCS#8 and legacy PEM), its password in tls.key_password_file, the
// cellgate binary and sim7600 plugin, the emulated modem on a pty making
// real TLS connections, and a real mosquitto requiring client
// certificates, in both TLS modes. The password must reach the modem
// (keypwd) or host TLS and appear in no log, trace or status.

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cellgate/cellgate/internal/testutil"
)

const (
	keyPassword   = "Gw-key-pass:correct horse battery"
	wrongPassword = "Gw-key-pass:not the one"
)

// newEncryptedKeyWorld is newWorld with client.key encrypted by openssl
// and the password in key.pass; the modem's AT transcript goes to trace.
func newEncryptedKeyWorld(t *testing.T, mode string, legacy bool, password string, trace *testutil.SyncBuffer) *world {
	t.Helper()
	bin, err := binaries()
	if err != nil {
		t.Fatal(err)
	}
	w := newWorldDir(t, mode)
	testutil.EncryptKeyFile(t, filepath.Join(w.dir, "client.key"), keyPassword, legacy)
	if err := os.WriteFile(filepath.Join(w.dir, "key.pass"), []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	w.startModemsim("sim7600", trace)
	port, statusPort := w.startBroker()
	cfg := fmt.Sprintf(`device_id: it-gw
modem: {model: sim7600, port: %q}
plugins: {dir: %q}
tls: {mode: %s, ca: ca.pem, cert: client.pem, key: client.key, key_password_file: key.pass}
inputs: {http: {listen: "127.0.0.1:%d"}}
status: {listen: "127.0.0.1:%d"}
spool: {dir: spool}
uplink:
  mqtt: {broker: "mqtts://%s", topic: "cellgate/{device_id}/telemetry", qos: 1}
  batch: {max_readings: 50, max_delay: 200ms}
log: {level: debug}
`, filepath.Join(w.dir, "ttyUSB2"), bin, mode, port, statusPort, w.broker.addr)
	if err := os.WriteFile(filepath.Join(w.dir, "cellgate.yaml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return w
}

func TestEncryptedKeyEndToEnd(t *testing.T) {
	for _, mode := range []string{"modem", "host"} {
		for _, legacy := range []bool{false, true} {
			format := "PKCS#8"
			if legacy {
				format = "legacy PEM"
			}
			t.Run(mode+" TLS, "+format, func(t *testing.T) {
				trace := &testutil.SyncBuffer{}
				w := newEncryptedKeyWorld(t, mode, legacy, keyPassword, trace)
				bin, _ := binaries()
				w.agent = startAgent(t, bin, w.dir)
				w.waitHealthy()
				ids := w.post(100, "encrypted key")
				w.expectDelivered(ids, 60*time.Second)
				w.expectStatus(len(ids))
				checkKeyOnModem(t, w, trace.String())
				status, err := exec.Command(filepath.Join(bin, "cellgate"), "status", "--addr", strings.TrimPrefix(w.status, "http://"), "--json").CombinedOutput()
				if err != nil {
					t.Fatalf("cellgate status: %v: %s", err, status)
				}
				for name, text := range map[string]string{"agent log": w.agent.log(), "modem AT trace": trace.String(), "status": string(status)} {
					if strings.Contains(text, keyPassword) {
						t.Errorf("the key password appears in the %s", name)
					}
				}
			})
		}
	}
}

// checkKeyOnModem: in modem mode the key went to the modem encrypted, as
// the file has it, with keypwd set (redacted in the trace); in host mode
// no client key reached the modem.
func checkKeyOnModem(t *testing.T, w *world, trace string) {
	t.Helper()
	var encryptedOnModem, plainOnModem bool
	files, _ := filepath.Glob(filepath.Join(w.dir, "flash", "*"))
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		switch {
		case bytes.Contains(data, []byte("ENCRYPTED")):
			encryptedOnModem = true
		case bytes.Contains(data, []byte("PRIVATE KEY")):
			plainOnModem = true
		}
	}
	if plainOnModem {
		t.Error("a plain private key was downloaded into the modem")
	}
	switch w.mode {
	case "modem":
		if !encryptedOnModem || !strings.Contains(trace, `keypwd\",<redacted>`) {
			t.Errorf("modem mode: encrypted key on the modem %v, keypwd set %v; want both (trace:\n%s)", encryptedOnModem, strings.Contains(trace, "keypwd"), trace)
		}
	case "host":
		if encryptedOnModem || strings.Contains(trace, "keypwd") {
			t.Error("host mode: the key or its password reached the modem")
		}
	}
}

// TestWrongKeyPasswordStopsBeforeTheModem: with a wrong password `cellgate
// run` exits at once with the key path and without touching the modem,
// in both modes, and shows neither password.
func TestWrongKeyPasswordStopsBeforeTheModem(t *testing.T) {
	for _, mode := range []string{"modem", "host"} {
		t.Run(mode+" TLS", func(t *testing.T) {
			w := newEncryptedKeyWorld(t, mode, false, wrongPassword, &testutil.SyncBuffer{})
			bin, _ := binaries()
			cmd := exec.Command(filepath.Join(bin, "cellgate"), "run", "--config", filepath.Join(w.dir, "cellgate.yaml"))
			out := &testutil.SyncBuffer{}
			cmd.Stdout, cmd.Stderr = out, out
			done := make(chan error, 1)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			go func() { done <- cmd.Wait() }()
			var err error
			select {
			case err = <-done:
			case <-time.After(60 * time.Second):
				cmd.Process.Kill()
				t.Fatalf("cellgate run did not stop on a wrong key password:\n%s", out.String())
			}
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() == 0 {
				t.Fatalf("cellgate run: %v, want a non-zero exit:\n%s", err, out.String())
			}
			if !strings.Contains(out.String(), "tls.key_password_file: "+filepath.Join(w.dir, "key.pass")+": does not decrypt tls.key") {
				t.Errorf("the error does not name tls.key_password_file:\n%s", out.String())
			}
			if s := out.String(); strings.Contains(s, keyPassword) || strings.Contains(s, wrongPassword) {
				t.Errorf("the output shows a password:\n%s", s)
			}
			if c := w.modem.Counters(); c.SerialHostToModemBytes != 0 {
				t.Errorf("%d bytes were sent to the modem before the key was checked", c.SerialHostToModemBytes)
			}
		})
	}
}
