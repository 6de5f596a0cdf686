package agent_test

// The certificate rotation by CSR (docs/certificates.md, "Rotation") with
// real parts: the cellgate binary (agent, `pki init`, `pki serve`, `cert
// renew`), the sim7600 plugin, the emulated modem on a pty and a mosquitto
// requiring client certificates, in both TLS modes.

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"

	"github.com/cellgate/cellgate/agent/pki"
	"github.com/cellgate/cellgate/internal/testutil"
	"github.com/cellgate/cellgate/sdk"
	"github.com/cellgate/cellgate/sdk/plugintest"
)

// rotWorld is a world whose gateway trusts, besides the test CA, the CAs
// of agentCAs (tls.ca: agent-ca.pem) and whose broker trusts the client
// certificates of brokerCAs too (cafile: ca.pem).
type rotWorld struct {
	*world
	status  string // the status listener, 127.0.0.1:port
	oldCert []byte
	oldKey  []byte
}

// rotCA is a CA made by the real `cellgate pki init`.
type rotCA struct {
	dir string
	ca  *pki.CA
}

func pkiInit(t *testing.T, dir, name string) rotCA {
	t.Helper()
	bin, _ := binaries()
	d := filepath.Join(dir, name)
	out, err := exec.Command(filepath.Join(bin, "cellgate"), "pki", "init", "--dir", d, "--name", name).CombinedOutput()
	if err != nil {
		t.Fatalf("cellgate pki init: %v\n%s", err, out)
	}
	ca, err := pki.Load(d)
	if err != nil {
		t.Fatal(err)
	}
	return rotCA{dir: d, ca: ca}
}

// newCA is a world setup that makes the CA name with pkiInit into *ca; the
// gateway trusts it and, when broker is true, the broker too (otherwise the
// broker refuses the certificates it issues).
func newCA(ca *rotCA, name string, broker bool) func(w *rotWorld) (agentCAs, brokerCAs []rotCA) {
	return func(w *rotWorld) ([]rotCA, []rotCA) {
		*ca = pkiInit(w.t, w.dir, name)
		if broker {
			return []rotCA{*ca}, []rotCA{*ca}
		}
		return []rotCA{*ca}, nil
	}
}

// trustOpsKey makes the signing key "ops" in w.dir (cellgate config
// keygen) and returns the configuration lines that trust it, for
// newRotWorldWith.
func trustOpsKey(w *rotWorld) string {
	w.cellgate("config", "keygen", "--out", filepath.Join(w.dir, "ops"))
	pub := strings.TrimSpace(string(w.read("ops.pub")))
	return fmt.Sprintf("remote_config: {enabled: true, trusted_keys: {ops: %q}, dir: state}\n", pub)
}

// expectRolledBack checks what a rotation that fell back for why leaves:
// the configured files and the modem hold the old set and no rotation file
// is left; /v1/status and the cert/status topic (watch) say rolled_back
// with why; readings posted now reach the broker, with ids.
func (w *rotWorld) expectRolledBack(watch *retainedWatcher, why string, ids []string) {
	t := w.t
	t.Helper()
	if !bytes.Equal(w.read("client.pem"), w.oldCert) || !bytes.Equal(w.read("client.key"), w.oldKey) {
		t.Fatal("the configured files changed after a rollback: a certificate the broker refuses was committed")
	}
	w.expectRotatedOnDiskNothingLeft()
	w.expectModemHolds(w.read("agent-ca.pem"), w.oldCert, w.oldKey)
	if st := w.certStatus(); st["state"] != "rolled_back" || !strings.Contains(fmt.Sprint(st["error"]), why) {
		t.Fatalf("status cert = %v, want rolled_back saying %q", st, why)
	}
	watch.expect(t, func(m map[string]any) bool {
		return m["state"] == "rolled_back" && strings.Contains(fmt.Sprint(m["error"]), why)
	})
	ids = append(ids, w.post(20, "after")...)
	w.expectDelivered(ids, 90*time.Second)
}

func newRotWorld(t *testing.T, mode string, setup func(w *rotWorld) (agentCAs, brokerCAs []rotCA), pause string) *rotWorld {
	return newRotWorldWith(t, mode, setup, pause, nil)
}

// newRotWorldWith is newRotWorld with extra configuration lines, written
// by extra once the world's directory exists.
func newRotWorldWith(t *testing.T, mode string, setup func(w *rotWorld) (agentCAs, brokerCAs []rotCA), pause string, extra func(w *rotWorld) string) *rotWorld {
	t.Helper()
	bin, err := binaries()
	if err != nil {
		t.Fatal(err)
	}
	w := &rotWorld{world: newWorldDir(t, mode)}
	agentCAs, brokerCAs := setup(w)
	w.writeCAs("agent-ca.pem", agentCAs)
	w.writeCAs("ca.pem", brokerCAs)
	// The gateway's own identity, not the subscriber's (p.Client): the
	// rotation test revokes it.
	gw := w.pki.NewClient(t, "it-gw")
	if err := os.WriteFile(filepath.Join(w.dir, "client.pem"), gw.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(w.dir, "client.key"), gw.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(w.dir, "client.key"), 0o600); err != nil {
		t.Fatal(err)
	}
	w.oldCert, w.oldKey = w.read("client.pem"), w.read("client.key")
	w.startModemsim("sim7600", nil)
	port, sport := w.startBroker()
	w.status = fmt.Sprintf("127.0.0.1:%d", sport)
	cfg := fmt.Sprintf(`device_id: it-gw
modem: {model: sim7600, port: %q}
plugins: {dir: %q}
tls: {mode: %s, ca: agent-ca.pem, cert: client.pem, key: client.key, rotation_timeout: 25s}
inputs: {http: {listen: "127.0.0.1:%d"}}
status: {listen: %q}
spool: {dir: spool}
uplink:
  mqtt: {broker: "mqtts://%s", topic: "cellgate/{device_id}/telemetry", qos: 1}
  batch: {max_readings: 50, max_delay: 200ms}
log: {level: debug}
`, filepath.Join(w.dir, "ttyUSB2"), bin, mode, port, w.status, w.broker.addr)
	if extra != nil {
		cfg += extra(w)
	}
	if err := os.WriteFile(filepath.Join(w.dir, "cellgate.yaml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	w.agent = startRotAgent(t, bin, w.dir, pause)
	w.waitHealthy()
	return w
}

// startRotAgent is startAgent with the rotation's test hook set to pause
// ("" for none).
func startRotAgent(t *testing.T, bin, dir, pause string) *agentProc {
	t.Helper()
	if pause != "" {
		t.Setenv("CGTEST_ROTATION_PAUSE", pause)
		defer os.Unsetenv("CGTEST_ROTATION_PAUSE")
	}
	return startAgent(t, bin, dir)
}

func (w *rotWorld) read(name string) []byte {
	w.t.Helper()
	b, err := os.ReadFile(filepath.Join(w.dir, name))
	if err != nil {
		w.t.Fatal(err)
	}
	return b
}

// writeCAs writes name: the test CA and the CAs given.
func (w *rotWorld) writeCAs(name string, cas []rotCA) {
	w.t.Helper()
	data := append([]byte(nil), w.pki.CA.CertPEM...)
	for _, c := range cas {
		data = append(data, c.ca.CertPEM...)
	}
	if err := os.WriteFile(filepath.Join(w.dir, name), data, 0o644); err != nil {
		w.t.Fatal(err)
	}
}

// pkiServe runs the real `cellgate pki serve` with CA c, connecting with a
// client certificate of the test CA.
func (w *rotWorld) pkiServe(c rotCA) *testutil.SyncBuffer {
	w.t.Helper()
	id := w.pki.NewClient(w.t, "pki-server")
	cert, key := filepath.Join(w.dir, "pki-server.pem"), filepath.Join(w.dir, "pki-server.key")
	if err := os.WriteFile(cert, id.CertPEM, 0o644); err != nil {
		w.t.Fatal(err)
	}
	if err := os.WriteFile(key, id.KeyPEM, 0o600); err != nil {
		w.t.Fatal(err)
	}
	bin, _ := binaries()
	cmd := exec.Command(filepath.Join(bin, "cellgate"), "pki", "serve", "--broker", "mqtts://"+w.broker.addr,
		"--ca", filepath.Join(w.dir, "ca.pem"), "--cert", cert, "--key", key, "--dir", c.dir, "--validity", "30d")
	out := &testutil.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		w.t.Fatal(err)
	}
	w.t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if w.t.Failed() {
			w.t.Logf("pki serve:\n%s", out.String())
		}
	})
	testutil.Eventually(w.t, 30*time.Second, "pki serve to subscribe", func() bool {
		return strings.Contains(out.String(), `msg="pki serve: answering CSRs"`)
	})
	return out
}

// renew runs `cellgate cert renew` and returns its output and exit code.
func (w *rotWorld) renew(wait string) (string, int) {
	w.t.Helper()
	bin, _ := binaries()
	out, err := exec.Command(filepath.Join(bin, "cellgate"), "cert", "renew", "--addr", w.status, "--wait", wait).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return string(out), ee.ExitCode()
	}
	if err != nil {
		w.t.Fatal(err)
	}
	return string(out), 0
}

// certStatus reads the cert share of GET /v1/status.
func (w *rotWorld) certStatus() map[string]any {
	w.t.Helper()
	resp, err := http.Get("http://" + w.status + "/v1/status")
	if err != nil {
		w.t.Fatal(err)
	}
	defer resp.Body.Close()
	var st struct {
		Cert map[string]any `json:"cert"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		w.t.Fatal(err)
	}
	return st.Cert
}

// modemFiles returns the modem's certificate store (what AT+CCERTLIST
// lists), by name.
func (w *rotWorld) modemFiles() map[string][]byte {
	w.t.Helper()
	entries, err := os.ReadDir(w.modem.StateDir())
	if err != nil {
		w.t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, e := range entries {
		if e.Type().IsRegular() && !strings.HasPrefix(e.Name(), ".") {
			b, _ := os.ReadFile(filepath.Join(w.modem.StateDir(), e.Name()))
			out[e.Name()] = b
		}
	}
	return out
}

// expectModemHolds checks that the modem's store holds exactly the CA,
// cert and key given (modem TLS) and nothing else of ours.
func (w *rotWorld) expectModemHolds(ca, cert, key []byte) {
	w.t.Helper()
	if w.mode != "modem" {
		return
	}
	files := w.modemFiles()
	want := map[string][]byte{"ca": ca, "cert": cert, "key": key}
	for what, data := range want {
		found := false
		for _, b := range files {
			found = found || bytes.Equal(b, data)
		}
		if !found {
			w.t.Errorf("the modem lacks the %s in use; it holds %v", what, names(files))
		}
	}
	if len(files) != 3 {
		w.t.Errorf("the modem holds %d files %v, want the 3 of the set in use", len(files), names(files))
	}
}

func names(m map[string][]byte) []string {
	var out []string
	for n := range m {
		out = append(out, n)
	}
	return out
}

// feed posts 5 readings every 100 ms until stop is called, which returns
// every id the agent accepted.
func (w *rotWorld) feed() (stop func() []string) {
	var (
		mu   sync.Mutex
		ids  []string
		quit = make(chan struct{})
		done = make(chan struct{})
	)
	go func() {
		defer close(done)
		for n := 0; ; n++ {
			select {
			case <-quit:
				return
			case <-time.After(100 * time.Millisecond):
			}
			if got, err := w.tryPost(5, fmt.Sprintf("feed-%d", n)); err == nil {
				mu.Lock()
				ids = append(ids, got...)
				mu.Unlock()
			}
		}
	}()
	return func() []string {
		close(quit)
		<-done
		mu.Lock()
		defer mu.Unlock()
		return ids
	}
}

func parseCert(t *testing.T, data []byte) *x509.Certificate {
	t.Helper()
	certs, err := sdk.ParseCertificates("cert", data)
	if err != nil || len(certs) == 0 {
		t.Fatalf("parse certificate: %v", err)
	}
	return certs[0]
}

func TestCertificateRotationByCSR(t *testing.T) {
	for _, mode := range []string{"modem", "host"} {
		t.Run(mode+" TLS", func(t *testing.T) {
			var fleet rotCA
			w := newRotWorld(t, mode, newCA(&fleet, "fleet", true), "")
			serve := w.pkiServe(fleet)
			ids := w.post(20, "before")
			w.expectDelivered(ids, 60*time.Second)
			stop := w.feed()
			out, code := w.renew("3m")
			ids = append(ids, stop()...)
			if code != 0 || !strings.Contains(out, "rotated: certificate serial") {
				t.Fatalf("cellgate cert renew: exit %d\n%s", code, out)
			}
			newCert := parseCert(t, w.read("client.pem"))
			serial := fmt.Sprintf("%x", newCert.SerialNumber)
			if !strings.Contains(serve.String(), "issued it-gw serial "+serial) || !strings.Contains(out, serial) {
				t.Fatalf("the certificate in client.pem (serial %s) is not the one pki serve issued:\n%s\n%s", serial, serve.String(), out)
			}
			w.expectRotatedOnDisk(newCert, fleet)
			w.expectModemHolds(w.read("agent-ca.pem"), w.read("client.pem"), w.read("client.key"))
			if st := w.certStatus(); st["state"] != "rotated" || st["serial"] != serial {
				t.Fatalf("status cert = %v, want rotated with serial %s", st, serial)
			}
			w.revokeOldAndRestartBroker(parseCert(t, w.oldCert), fleet)
			ids = append(ids, w.post(20, "after revocation")...)
			w.expectDelivered(ids, 90*time.Second)
		})
	}
}

// expectRotatedOnDisk checks that the configured files are the new set:
// the issued certificate and its key (0600), the old ones and the
// rotation's own files gone.
func (w *rotWorld) expectRotatedOnDisk(cert *x509.Certificate, issuer rotCA) {
	w.t.Helper()
	if err := cert.CheckSignatureFrom(issuer.ca.Cert); err != nil {
		w.t.Fatalf("client.pem is not issued by the fleet CA: %v", err)
	}
	key, err := pki.ParseKey(w.read("client.key"))
	if err != nil || !pki.SamePublicKey(key.Public(), cert.PublicKey) {
		w.t.Fatalf("client.key is not the new certificate's key (%v)", err)
	}
	if bytes.Equal(w.read("client.key"), w.oldKey) {
		w.t.Fatal("client.key is the old key")
	}
	if fi, err := os.Stat(filepath.Join(w.dir, "client.key")); err != nil || fi.Mode().Perm() != 0o600 {
		w.t.Fatalf("client.key: %v mode %v, want 0600", err, fi.Mode())
	}
	for _, n := range []string{"client.pem.next", "client.key.next", "client.pem.rotation"} {
		if _, err := os.Stat(filepath.Join(w.dir, n)); err == nil {
			w.t.Errorf("%s left behind", n)
		}
	}
}

// revokeOldAndRestartBroker makes the broker refuse the old certificate
// (a CRL of the test CA naming its serial; the fleet CA's CRL is empty)
// and restarts it: from now on only the new certificate gets data through.
func (w *rotWorld) revokeOldAndRestartBroker(old *x509.Certificate, fleet rotCA) {
	w.t.Helper()
	testKey, err := pki.ParseKey(w.pki.CA.KeyPEM)
	if err != nil {
		w.t.Fatal(err)
	}
	testCA := parseCert(w.t, w.pki.CA.CertPEM)
	now := time.Now()
	var crls []byte
	for _, c := range []struct {
		cert    *x509.Certificate
		key     crypto.Signer
		revoked []x509.RevocationListEntry
	}{
		{testCA, testKey, []x509.RevocationListEntry{{SerialNumber: old.SerialNumber, RevocationTime: now.Add(-time.Minute)}}},
		{fleet.ca.Cert, fleet.ca.Key, nil},
	} {
		der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
			Number: big.NewInt(1), ThisUpdate: now.Add(-time.Hour), NextUpdate: now.Add(24 * time.Hour),
			RevokedCertificateEntries: c.revoked,
		}, c.cert, c.key)
		if err != nil {
			w.t.Fatal(err)
		}
		crls = append(crls, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der})...)
	}
	crlFile := filepath.Join(w.dir, "crl.pem")
	if err := os.WriteFile(crlFile, crls, 0o644); err != nil {
		w.t.Fatal(err)
	}
	conf, _ := os.ReadFile(w.broker.conf)
	if err := os.WriteFile(w.broker.conf, append(conf, []byte("crlfile "+crlFile+"\n")...), 0o644); err != nil {
		w.t.Fatal(err)
	}
	w.broker.restart(w.t)
	if err := dialMQTTWith(w, w.read("client.pem"), w.read("client.key")); err != nil {
		w.t.Fatalf("the broker refuses the new certificate: %v", err)
	}
	if err := dialMQTTWith(w, w.oldCert, w.oldKey); err == nil {
		w.t.Fatal("the broker still accepts the old certificate after its revocation: the CRL proves nothing")
	}
}

// dialMQTTWith connects to the broker with a client certificate and says
// whether the broker accepted the connection.
func dialMQTTWith(w *rotWorld, certPEM, keyPEM []byte) error {
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return err
	}
	conn, err := tls.Dial("tcp", w.broker.addr, &tls.Config{RootCAs: w.pki.CertPool(), Certificates: []tls.Certificate{cert}, ServerName: "127.0.0.1"})
	if err != nil {
		return err
	}
	defer conn.Close()
	c := paho.NewClient(paho.ClientConfig{Conn: threadSafe(conn)})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ack, err := c.Connect(ctx, &paho.Connect{ClientID: "it-cert-probe", CleanStart: true, KeepAlive: 10})
	if err != nil {
		return err
	}
	if ack.ReasonCode != 0 {
		return fmt.Errorf("CONNACK reason 0x%02x", ack.ReasonCode)
	}
	return c.Disconnect(&paho.Disconnect{})
}

func TestCertificateRotationRefusedByTheBrokerFallsBack(t *testing.T) {
	for _, mode := range []string{"modem", "host"} {
		t.Run(mode+" TLS", func(t *testing.T) {
			var rogue rotCA
			// The gateway trusts the rogue CA, the broker does not: the
			// new certificate passes the gateway's checks and the broker
			// refuses it.
			w := newRotWorld(t, mode, newCA(&rogue, "rogue", false), "")
			w.pkiServe(rogue)
			watch := newRetainedWatcher(t, w.pki, w.broker.addr, "cellgate/it-gw/cert/status")
			ids := w.post(20, "before")
			w.expectDelivered(ids, 60*time.Second)
			stop := w.feed()
			out, code := w.renew("3m")
			ids = append(ids, stop()...)
			if code != 1 || !strings.Contains(out, "rolled back") || !strings.Contains(out, "acknowledged no publish with the new certificate") {
				t.Fatalf("cellgate cert renew: exit %d, want 1 with the reason\n%s", code, out)
			}
			w.expectRolledBack(watch, "acknowledged no publish", ids)
		})
	}
}

func TestAgentSIGKILLedMidRotationComesBackConsistent(t *testing.T) {
	for _, mode := range []string{"modem", "host"} {
		t.Run(mode+" TLS", func(t *testing.T) {
			var fleet rotCA
			// Paused after the download (the new set is on disk and, in
			// modem TLS, on the modem), before the reconnect.
			w := newRotWorld(t, mode, newCA(&fleet, "fleet", true), "provisioned")
			w.pkiServe(fleet)
			ids := w.post(20, "before")
			w.expectDelivered(ids, 60*time.Second)
			if out, code := w.renew("0"); code != 0 {
				t.Fatalf("cellgate cert renew --wait 0: exit %d\n%s", code, out)
			}
			testutil.Eventually(t, 90*time.Second, "the rotation to pause after the download", func() bool {
				return strings.Contains(w.agent.log(), "certificate rotation paused")
			})
			if _, err := os.Stat(filepath.Join(w.dir, "client.pem.next")); err != nil {
				t.Fatalf("the new certificate is not on disk at the pause: %v", err)
			}
			if mode == "modem" && len(w.modemFiles()) <= 3 {
				t.Fatalf("the new set is not on the modem at the pause: %v", names(w.modemFiles()))
			}
			ids = append(ids, w.post(20, "paused")...)
			w.agent.kill(t)
			bin, _ := binaries()
			w.agent = startAgent(t, bin, w.dir)
			w.waitHealthy()
			ids = append(ids, w.post(20, "after restart")...)
			w.expectDelivered(ids, 90*time.Second)
			if !bytes.Equal(w.read("client.pem"), w.oldCert) || !bytes.Equal(w.read("client.key"), w.oldKey) {
				t.Fatal("after the restart the configured files are not the old set")
			}
			w.expectRotatedOnDiskNothingLeft()
			testutil.Eventually(t, 60*time.Second, "the orphaned new files to leave the modem", func() bool {
				return w.mode != "modem" || len(w.modemFiles()) == 3
			})
			w.expectModemHolds(w.read("agent-ca.pem"), w.oldCert, w.oldKey)
			if st := w.certStatus(); st["state"] != "rolled_back" || !strings.Contains(fmt.Sprint(st["error"]), "interrupted at provisioned") {
				t.Fatalf("status cert = %v, want rolled_back, interrupted at provisioned", st)
			}
		})
	}
}

// expectRotatedOnDiskNothingLeft checks that no rotation file is left.
func (w *rotWorld) expectRotatedOnDiskNothingLeft() {
	w.t.Helper()
	for _, n := range []string{"client.pem.next", "client.key.next", "client.pem.rotation"} {
		if _, err := os.Stat(filepath.Join(w.dir, n)); err == nil {
			w.t.Errorf("%s left behind", n)
		}
	}
}

// retainedWatcher records the JSON messages on one topic.
type retainedWatcher struct {
	mu   sync.Mutex
	seen []map[string]any
}

func newRetainedWatcher(t *testing.T, p *plugintest.PKI, addr, topic string) *retainedWatcher {
	t.Helper()
	s := &retainedWatcher{}
	watchTopic(t, p, addr, "it-cert-status", topic, func(pr paho.PublishReceived) {
		var m map[string]any
		if json.Unmarshal(pr.Packet.Payload, &m) == nil {
			s.mu.Lock()
			s.seen = append(s.seen, m)
			s.mu.Unlock()
		}
	})
	return s
}

func (s *retainedWatcher) expect(t *testing.T, match func(map[string]any) bool) {
	t.Helper()
	testutil.Eventually(t, 60*time.Second, "the status topic to carry the outcome", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, m := range s.seen {
			if match(m) {
				return true
			}
		}
		return false
	})
}

func TestSignedRenewRequestRotates(t *testing.T) {
	var fleet rotCA
	w := newRotWorldWith(t, "host", newCA(&fleet, "fleet", true), "", trustOpsKey)
	serve := w.pkiServe(fleet)
	w.expectServeRefuses(serve)
	ids := w.post(20, "before")
	w.expectDelivered(ids, 60*time.Second)
	sign := func(key string, version int) []byte {
		return []byte(w.cellgate("cert", "sign", "--key", filepath.Join(w.dir, key), "--key-id", "ops",
			"--version", fmt.Sprint(version), "--device", "it-gw"))
	}
	// A request signed by a key the gateway does not trust is refused.
	w.cellgate("config", "keygen", "--out", filepath.Join(w.dir, "rogue"))
	w.publish("cellgate/it-gw/cert/renew", sign("rogue.key", 1))
	testutil.Eventually(t, 60*time.Second, "the forged request to be refused", func() bool {
		return strings.Contains(fmt.Sprint(w.certStatus()["refused"]), "signature")
	})
	good := sign("ops.key", 1)
	w.publish("cellgate/it-gw/cert/renew", good)
	testutil.Eventually(t, 120*time.Second, "the signed request to rotate the certificate", func() bool {
		st := w.certStatus()
		return st["state"] == "rotated" && st["trigger"] == "remote"
	})
	// The same request again is a replay: no second rotation.
	w.publish("cellgate/it-gw/cert/renew", good)
	testutil.Eventually(t, 60*time.Second, "the replayed request to be ignored", func() bool {
		return strings.Contains(w.agent.log(), "renewal request of an accepted version ignored")
	})
	ids = append(ids, w.post(20, "after")...)
	w.expectDelivered(ids, 60*time.Second)
	rot, _ := w.certStatus()["rotations"].(map[string]any)
	if rot["rotated"] != float64(1) {
		t.Fatalf("rotations %v after a replayed request, want exactly 1 and the replay ignored", rot)
	}
}

// cellgate runs the cellgate binary and returns its stdout; it fails the
// test on a non-zero exit.
func (w *rotWorld) cellgate(args ...string) string {
	w.t.Helper()
	bin, _ := binaries()
	cmd := exec.Command(filepath.Join(bin, "cellgate"), args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		w.t.Fatalf("cellgate %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr.String())
	}
	return string(out)
}

// threadSafe gives a bare connection the lock paho takes around each
// packet's Writes. paho writes a packet as several Writes and, right after
// CONNACK, sends a PINGREQ from its pinger goroutine: on a conn without a
// lock the PINGREQ can land inside the PUBLISH being written, and the
// broker then gets a garbled payload (pki serve: "CSR: no PEM block
// found") or a broken stream (no PUBACK: "context deadline exceeded").
func threadSafe(conn net.Conn) net.Conn { return packets.NewThreadSafeConn(conn) }

// publishes counts publish's connections, for unique client ids.
var publishes int

// publish publishes payload on topic at QoS 1 as the test client.
func (w *rotWorld) publish(topic string, payload []byte) {
	w.t.Helper()
	conn, err := tls.Dial("tcp", w.broker.addr, &tls.Config{RootCAs: w.pki.CertPool(), Certificates: []tls.Certificate{w.pki.Client.TLSCertificate(w.t)}, ServerName: "127.0.0.1"})
	if err != nil {
		w.t.Fatal(err)
	}
	defer conn.Close()
	c := paho.NewClient(paho.ClientConfig{Conn: threadSafe(conn)})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	publishes++
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: fmt.Sprintf("it-publisher-%d", publishes), CleanStart: true, KeepAlive: 10}); err != nil {
		w.t.Fatalf("publish to %s: connect: %v", topic, err)
	}
	if _, err := c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: payload}); err != nil {
		w.t.Fatalf("publish to %s: %v", topic, err)
	}
	c.Disconnect(&paho.Disconnect{})
}

// expectServeRefuses publishes CSRs pki serve must refuse: a common name
// that is not the topic's device id, and a signature that does not verify.
func (w *rotWorld) expectServeRefuses(serve *testutil.SyncBuffer) {
	w.t.Helper()
	key, err := pki.NewKey("p256")
	if err != nil {
		w.t.Fatal(err)
	}
	other, err := pki.NewCSR(key, pkix.Name{CommonName: "someone-else"})
	if err != nil {
		w.t.Fatal(err)
	}
	w.publish("cellgate/it-gw/cert/csr", other)
	good, _ := pki.NewCSR(key, pkix.Name{CommonName: "it-gw"})
	block, _ := pem.Decode(good)
	block.Bytes[len(block.Bytes)-3] ^= 0xff // inside the signature
	w.publish("cellgate/it-gw/cert/csr", pem.EncodeToMemory(block))
	testutil.Eventually(w.t, 30*time.Second, "pki serve to refuse both CSRs", func() bool {
		out := serve.String()
		return strings.Contains(out, `CSR common name \"someone-else\" is not the device id \"it-gw\"`) && strings.Contains(out, "bad signature")
	})
	if strings.Contains(serve.String(), "issued it-gw") {
		w.t.Fatalf("pki serve issued a certificate for a refused CSR:\n%s", serve.String())
	}
}
