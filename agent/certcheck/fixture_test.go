package certcheck_test

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cellgate/cellgate/internal/devpki"
	"github.com/cellgate/cellgate/internal/testutil"
)

// gateway is a configuration directory as an operator lays it out: a CA,
// the gateway's certificate and key (0600), and cellgate.yaml naming them
// and the plugin directory.
type gateway struct {
	t         *testing.T
	dir       string
	pluginDir string
	ca        *devpki.CA
	client    devpki.Identity
	// extra are lines added to the tls section; pins are plugins.sha256.
	extra []string
	pins  map[string]string
}

// newGateway makes a good gateway: config check passes on it.
func newGateway(t *testing.T, pluginDir string) *gateway {
	t.Helper()
	ca, err := devpki.NewCA(devpki.P256, "fleet CA")
	if err != nil {
		t.Fatal(err)
	}
	client, err := ca.Issue(devpki.Leaf{CommonName: "gw-0001", Hosts: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	g := &gateway{t: t, dir: t.TempDir(), pluginDir: pluginDir, ca: ca, client: client}
	g.write("ca.pem", ca.CertPEM, 0o644)
	g.write("client.pem", client.CertPEM, 0o644)
	g.write("client.key", client.KeyPEM, 0o600)
	return g
}

func (g *gateway) path(name string) string { return filepath.Join(g.dir, name) }

func (g *gateway) write(name string, data []byte, mode os.FileMode) {
	g.t.Helper()
	if err := os.WriteFile(g.path(name), data, mode); err != nil {
		g.t.Fatal(err)
	}
	if err := os.Chmod(g.path(name), mode); err != nil { // past the umask
		g.t.Fatal(err)
	}
}

// issue makes a certificate of the gateway's CA for the gateway's key
// pair's replacement, valid from notBefore to notAfter.
func (g *gateway) issue(notBefore, notAfter time.Time) devpki.Identity {
	g.t.Helper()
	id, err := g.ca.Issue(devpki.Leaf{CommonName: "gw-0001", Hosts: []string{}, NotBefore: notBefore, NotAfter: notAfter})
	if err != nil {
		g.t.Fatal(err)
	}
	return id
}

// pinPlugin pins the sim7600 plugin to sum, or to the binary's real
// checksum when sum is "".
func (g *gateway) pinPlugin(sum string) {
	g.t.Helper()
	if sum == "" {
		data, err := os.ReadFile(filepath.Join(g.pluginDir, "cellgate-plugin-sim7600"))
		if err != nil {
			g.t.Fatal(err)
		}
		s := sha256.Sum256(data)
		sum = hex.EncodeToString(s[:])
	}
	g.pins = map[string]string{"sim7600": sum}
}

// config writes cellgate.yaml and returns its path.
func (g *gateway) config() string {
	g.t.Helper()
	var pins []string
	for m, s := range g.pins {
		pins = append(pins, fmt.Sprintf("%s: %q", m, s))
	}
	text := fmt.Sprintf(`device_id: gw-0001
modem: {model: sim7600, port: /dev/ttyUSB2}
plugins: {dir: %q, sha256: {%s}}
tls:
  mode: modem
  ca: ca.pem
  cert: client.pem
  key: client.key
%s
spool: {dir: spool}
uplink:
  mqtt: {broker: "mqtts://broker.example.com:8883"}
`, g.pluginDir, strings.Join(pins, ", "), indent(g.extra))
	g.write("cellgate.yaml", []byte(text), 0o644)
	return g.path("cellgate.yaml")
}

func indent(lines []string) string {
	var b strings.Builder
	for _, l := range lines {
		b.WriteString("  " + l + "\n")
	}
	return b.String()
}

// encryptKey replaces client.key by the same key encrypted with password
// by the real openssl CLI: PKCS#8, or legacy PEM encryption.
func encryptKey(t *testing.T, dir, password string, legacy bool) {
	t.Helper()
	testutil.EncryptKeyFile(t, filepath.Join(dir, "client.key"), password, legacy)
}
