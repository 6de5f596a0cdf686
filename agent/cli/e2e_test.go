package cli_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cellgate/cellgate/internal/testutil"
	"github.com/cellgate/cellgate/sdk/modemsim"
	"github.com/cellgate/cellgate/sdk/plugintest"
)

// binaries builds cellgate and the sim7600 plugin once, side by side.
var binaries = testutil.BuildOnce(testutil.Cellgate, testutil.PluginSim7600)

func TestMain(m *testing.M) { testutil.Main(m) }

func binDir(t *testing.T) string {
	t.Helper()
	dir, err := binaries()
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// startModem runs an emulated SIM7600 on a pty.
func startModem(t *testing.T) *modemsim.Modem {
	t.Helper()
	m, err := modemsim.Start(modemsim.Config{Model: "sim7600", Baud: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// startSServer runs the seed document's openssl server, line-reversing
// (-rev), requiring and verifying a client certificate.
func startSServer(t *testing.T, dir string, extra ...string) int {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Fatal("openssl not installed: run make deps")
	}
	port := testutil.FreePort(t)
	args := append([]string{"s_server", "-accept", "127.0.0.1:" + strconv.Itoa(port),
		"-Verify", "10", "-verify_return_error", "-named_curve", "secp521r1", "-rev",
		"-CAfile", filepath.Join(dir, "ca.pem"), "-cert", filepath.Join(dir, "server.pem"), "-key", filepath.Join(dir, "server.key")}, extra...)
	cmd := exec.Command("openssl", args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	startUntilEnd(t, cmd, "openssl s_server output", &out)
	if err := testutil.WaitListening(fmt.Sprintf("127.0.0.1:%d", port), 10*time.Second, nil); err != nil {
		t.Fatalf("openssl s_server: %v", err)
	}
	return port
}

// cellgate runs the cellgate binary with stdin and returns stdout, stderr
// and the exit code.
func cellgate(t *testing.T, stdin string, args ...string) (string, string, int) {
	t.Helper()
	return cellgateEnv(t, nil, stdin, args...)
}

// cellgateEnv is cellgate with extra environment variables (KEY=VALUE)
// on top of the test's.
func cellgateEnv(t *testing.T, env []string, stdin string, args ...string) (string, string, int) {
	t.Helper()
	return runBinary(t, 2*time.Minute, filepath.Join(binDir(t), "cellgate"), env, stdin, args...)
}

func pkiFiles(t *testing.T, p *plugintest.PKI) string {
	t.Helper()
	return p.WriteFiles(t, t.TempDir())
}

func TestModemInfoJSON(t *testing.T) {
	m := startModem(t)
	out, errOut, code := cellgate(t, "", "modem", "info", "--model", "sim7600", "--port", m.Path(), "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var info map[string]any
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		t.Fatalf("not one JSON object: %q: %v", out, err)
	}
	for _, k := range []string{"model", "revision", "imei"} {
		if s, _ := info[k].(string); s == "" {
			t.Errorf("key %q missing or empty in %s", k, out)
		}
	}
	if !strings.Contains(info["model"].(string), "SIM7600") {
		t.Errorf("model %v", info["model"])
	}
}

// TestDialReversedLine is the end-to-end path: cellgate modem dial
// → plugin → emulated modem → openssl s_server -rev, both TLS modes.
func TestDialReversedLine(t *testing.T) {
	p := plugintest.NewPKI(t, plugintest.P521)
	dir := pkiFiles(t, p)
	for _, mode := range []struct {
		name  string
		extra []string
		tls   string
	}{
		{"modem TLS 1.2", []string{"-tls1_2"}, "modem"},
		{"host TLS", nil, "host"},
	} {
		t.Run(mode.name, func(t *testing.T) {
			m := startModem(t)
			port := startSServer(t, dir, mode.extra...)
			args := []string{"modem", "dial", "--model", "sim7600", "--port", m.Path(), "--linger", "1s",
				"--tls", mode.tls, "--ca", filepath.Join(dir, "ca.pem"), "--cert", filepath.Join(dir, "client.pem"), "--key", filepath.Join(dir, "client.key")}
			if mode.tls == "host" {
				args = append(args, "--sni", "localhost")
			}
			args = append(args, fmt.Sprintf("127.0.0.1:%d", port))
			out, errOut, code := cellgate(t, "hello modem\n", args...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			if !strings.Contains(out, "medom olleh") {
				t.Fatalf("stdout %q does not hold the reversed line", out)
			}
			if c := m.Counters(); c.NetTxBytes <= int64(len("hello modem\n")) {
				t.Errorf("net_tx_bytes %d: TLS bytes never crossed the modem's socket", c.NetTxBytes)
			}
		})
	}
}

func TestDialUntrustedCertificates(t *testing.T) {
	good := plugintest.NewPKI(t, plugintest.P521)
	stranger := plugintest.NewPKI(t, plugintest.P521)
	goodDir, strangerDir := pkiFiles(t, good), pkiFiles(t, stranger)
	cases := []struct {
		name             string
		serverDir        string
		caDir, clientDir string
	}{
		// The server verifies clients against the good CA; the client's
		// certificate comes from a stranger.
		{"untrusted client certificate", goodDir, goodDir, strangerDir},
		// The client trusts the good CA; the server's certificate is a
		// stranger's.
		{"untrusted server certificate", strangerDir, goodDir, goodDir},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := startModem(t)
			// The server trusts its own CA for client certificates.
			port := startSServer(t, c.serverDir, "-tls1_2")
			_, errOut, code := cellgate(t, "hello\n", "modem", "dial", "--model", "sim7600", "--port", m.Path(), "--linger", "1s",
				"--ca", filepath.Join(c.caDir, "ca.pem"), "--cert", filepath.Join(c.clientDir, "client.pem"), "--key", filepath.Join(c.clientDir, "client.key"),
				fmt.Sprintf("127.0.0.1:%d", port))
			if code == 0 {
				t.Fatal("dial succeeded; want a handshake failure")
			}
			lines := strings.Split(strings.TrimSpace(errOut), "\n")
			last := lines[len(lines)-1]
			if !strings.Contains(last, "+CCHOPEN: 0,15 (handshake error)") {
				t.Fatalf("stderr's last line %q should say +CCHOPEN: 0,15 (handshake error)", last)
			}
		})
	}
}

func TestTamperedPluginRefused(t *testing.T) {
	m := startModem(t)
	src := filepath.Join(binDir(t), "cellgate-plugin-sim7600")
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	dir := t.TempDir()
	tampered := filepath.Join(dir, "cellgate-plugin-sim7600")
	if err := os.WriteFile(tampered, append(data, 0), 0o755); err != nil {
		t.Fatal(err)
	}
	_, errOut, code := cellgate(t, "", "modem", "info", "--model", "sim7600", "--port", m.Path(),
		"--plugin-dir", dir, "--plugin-sha256", hex.EncodeToString(sum[:]))
	if code == 0 || !strings.Contains(errOut, "checksum mismatch") || !strings.Contains(errOut, tampered) {
		t.Fatalf("exit %d, stderr %q: want a refusal naming the binary and the checksum mismatch", code, errOut)
	}
	if n := m.Counters().Commands["AT"]; n != 0 {
		t.Fatalf("the tampered plugin reached the modem (%d AT commands)", n)
	}
	// The genuine binary with the same pin is accepted.
	_, errOut, code = cellgate(t, "", "modem", "info", "--model", "sim7600", "--port", m.Path(),
		"--plugin-dir", binDir(t), "--plugin-sha256", hex.EncodeToString(sum[:]))
	if code != 0 {
		t.Fatalf("genuine plugin refused: %s", errOut)
	}
}

// TestPluginOptions: --option reaches the plugin as modem.options would;
// one it knows is used, one it does not know is refused in its words.
func TestPluginOptions(t *testing.T) {
	m := startModem(t)
	_, errOut, code := cellgate(t, "", "modem", "info", "--model", "sim7600", "--port", m.Path(), "--option", "negotiate_time=45s")
	if code != 0 {
		t.Fatalf("modem info --option negotiate_time=45s: exit %d, stderr %q", code, errOut)
	}
	_, errOut, code = cellgate(t, "", "modem", "info", "--model", "sim7600", "--port", m.Path(), "--option", "negotiate_tme=45s")
	if code == 0 || !strings.Contains(errOut, "modem option negotiate_tme: ") {
		t.Fatalf("modem info --option negotiate_tme=45s: exit %d, stderr %q; want the plugin's refusal of the option", code, errOut)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"modem", "info", "--port", "/dev/null"}, "--model is required"},
		{[]string{"modem", "dial", "--model", "sim7600", "--port", "/dev/null", "--ca", "x", "nohostport"}, "nohostport"},
		{[]string{"modem", "info", "--model", "Bad Model", "--port", "/dev/null"}, `modem model "Bad Model"`},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
	} {
		_, errOut, code := cellgate(t, "", c.args...)
		if code == 0 || !strings.Contains(errOut, c.want) {
			t.Errorf("cellgate %v: exit %d, stderr %q; want failure mentioning %q", c.args, code, errOut, c.want)
		}
	}
}

func TestCertsProvisionListDelete(t *testing.T) {
	m := startModem(t)
	dir := pkiFiles(t, plugintest.NewPKI(t, plugintest.P256))
	conn := []string{"--model", "sim7600", "--port", m.Path()}
	provision := append([]string{"modem", "certs", "provision", "--json", "--ca", filepath.Join(dir, "ca.pem"),
		"--cert", filepath.Join(dir, "client.pem"), "--key", filepath.Join(dir, "client.key")}, conn...)
	out, errOut, code := cellgate(t, "", provision...)
	if code != 0 {
		t.Fatalf("provision: exit %d: %s", code, errOut)
	}
	var r struct {
		Downloaded []string `json:"downloaded"`
		Kept       []string `json:"kept"`
		AuthMode   int      `json:"auth_mode"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil || len(r.Downloaded) != 3 || r.AuthMode != 2 {
		t.Fatalf("first provision = %s (%v): want 3 files downloaded, authmode 2", out, err)
	}
	// Each command starts a fresh plugin, as an operator's would: the
	// second provision finds the files on the modem's flash.
	out, _, code = cellgate(t, "", provision...)
	if err := json.Unmarshal([]byte(out), &r); code != 0 || err != nil || len(r.Downloaded) != 0 || len(r.Kept) != 3 {
		t.Fatalf("second provision = %s: want nothing downloaded, 3 kept", out)
	}
	out, _, code = cellgate(t, "", append([]string{"modem", "certs", "list"}, conn...)...)
	names := strings.Fields(out)
	if code != 0 || len(names) != 3 {
		t.Fatalf("list = %q, want the 3 provisioned files", out)
	}
	if _, errOut, code = cellgate(t, "", append([]string{"modem", "certs", "delete", names[0]}, conn...)...); code != 0 {
		t.Fatalf("delete %s: %s", names[0], errOut)
	}
	out, _, _ = cellgate(t, "", append([]string{"modem", "certs", "list"}, conn...)...)
	if strings.Contains(out, names[0]) || len(strings.Fields(out)) != 2 {
		t.Fatalf("after delete, list = %q", out)
	}
	if _, errOut, code = cellgate(t, "", append([]string{"modem", "certs", "delete", "bad"}, conn...)...); code == 0 || !strings.Contains(errOut, "5-128 bytes") {
		t.Fatalf("delete of an invalid name: exit %d, %q", code, errOut)
	}
}
