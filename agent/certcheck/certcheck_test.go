package certcheck_test

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cellgate/cellgate/agent/certcheck"
	"github.com/cellgate/cellgate/agent/config"
	"github.com/cellgate/cellgate/internal/devpki"
	"github.com/cellgate/cellgate/internal/testutil"
)

var binaries = testutil.BuildOnce(testutil.Cellgate, testutil.PluginSim7600)

func TestMain(m *testing.M) { testutil.Main(m) }

// want is one finding a case expects: its key, and words of its message.
type want struct{ key, words string }

// checkCase breaks a good gateway in one way (or none) and says what
// config check must report.
type checkCase struct {
	name     string
	breakIt  func(g *gateway)
	errors   []want
	warnings []want
}

const keyPassword = "s3cret key password, not in any log"

// checkCases is one table, kept whole so that each case reads beside the
// others; a new problem is a new row.
func checkCases() []checkCase {
	day := 24 * time.Hour
	return []checkCase{
		{name: "a good gateway passes", breakIt: func(g *gateway) { g.pinPlugin("") }},
		{name: "missing file", breakIt: func(g *gateway) { os.Remove(g.path("client.pem")) },
			errors: []want{{"tls.cert", "client.pem: no such file"}}},
		{name: "directory", breakIt: func(g *gateway) { os.Remove(g.path("ca.pem")); os.Mkdir(g.path("ca.pem"), 0o755) },
			errors: []want{{"tls.ca", "ca.pem: is a directory, want a PEM file"}}},
		{name: "junk PEM", breakIt: func(g *gateway) { g.write("ca.pem", []byte("this is not a certificate\n"), 0o644) },
			errors: []want{{"tls.ca", "ca.pem: no PEM block found (byte 0): not a PEM certificate"}}},
		{name: "a damaged second block is named by number and line", breakIt: func(g *gateway) {
			bad := append(append([]byte{}, g.client.CertPEM...), "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n"...)
			g.write("client.pem", bad, 0o644)
		}, errors: []want{{"tls.cert", "client.pem: PEM block 2 at byte …(line 1…) cannot be decoded (bad base64 or no END line)"}}},
		{name: "junk key", breakIt: func(g *gateway) { g.write("client.key", []byte("not a key"), 0o600) },
			errors: []want{{"tls.key", "client.key: no PEM private key block found"}}},
		{name: "a damaged key block is named by number and line", breakIt: func(g *gateway) {
			g.write("client.key", []byte("# the gateway key\n-----BEGIN PRIVATE KEY-----\n%%%\n-----END PRIVATE KEY-----\n"), 0o600)
		}, errors: []want{{"tls.key", "client.key: PEM block 1 at byte 18 (line 2) cannot be decoded"}}},
		{name: "certificate and key do not match", breakIt: func(g *gateway) { g.write("client.key", g.issue(time.Time{}, time.Time{}).KeyPEM, 0o600) },
			errors: []want{{"tls.key", "client.key: does not match the certificate CN=gw-0001"}}},
		{name: "expired certificate", breakIt: func(g *gateway) {
			id := g.issue(time.Now().Add(-60*day), time.Now().Add(-day))
			g.write("client.pem", id.CertPEM, 0o644)
			g.write("client.key", id.KeyPEM, 0o600)
		}, errors: []want{{"tls.cert", "expired on"}}},
		{name: "chain to another CA", breakIt: func(g *gateway) {
			other, err := devpki.NewCA(devpki.P256, "other CA")
			if err != nil {
				g.t.Fatal(err)
			}
			id, err := other.Issue(devpki.Leaf{CommonName: "gw-0001", Hosts: []string{}})
			if err != nil {
				g.t.Fatal(err)
			}
			g.write("client.pem", id.CertPEM, 0o644)
			g.write("client.key", id.KeyPEM, 0o600)
		}, errors: []want{{"tls.cert", "(issuer CN=other CA,O=cellgate development PKI) does not chain to a CA in tls.ca"}}},
		{name: "key readable by group and others", breakIt: func(g *gateway) { os.Chmod(g.path("client.key"), 0o644) },
			errors: []want{{"tls.key", "client.key: mode 0644 is readable by group/others; chmod 600 it or set tls.allow_readable_key: true"}}},
		{name: "a readable key is allowed when the operator says so", breakIt: func(g *gateway) {
			os.Chmod(g.path("client.key"), 0o644)
			g.extra = append(g.extra, "allow_readable_key: true")
		}},
		{name: "wrong plugin checksum", breakIt: func(g *gateway) { g.pinPlugin(strings.Repeat("ab", 32)) },
			errors: []want{{"plugins.sha256.sim7600", "checksum mismatch: expected sha256 abab"}}},
		{name: "certificate inside renew_before warns", breakIt: func(g *gateway) {
			id := g.issue(time.Now().Add(-300*day), time.Now().Add(10*day))
			g.write("client.pem", id.CertPEM, 0o644)
			g.write("client.key", id.KeyPEM, 0o600)
		}, warnings: []want{{"tls.cert", "within tls.renew_before (30 days); renew it"}}},
		{name: "renew_before is the operator's", breakIt: func(g *gateway) {
			id := g.issue(time.Now().Add(-300*day), time.Now().Add(10*day))
			g.write("client.pem", id.CertPEM, 0o644)
			g.write("client.key", id.KeyPEM, 0o600)
			g.extra = append(g.extra, "renew_before: 168h")
		}},
		{name: "encrypted key with its password", breakIt: func(g *gateway) {
			encryptKey(g.t, g.dir, keyPassword, false)
			g.write("key.pass", []byte(keyPassword+"\n"), 0o600)
			g.extra = append(g.extra, "key_password_file: key.pass")
		}},
		{name: "legacy encrypted key with its password", breakIt: func(g *gateway) {
			encryptKey(g.t, g.dir, keyPassword, true)
			g.write("key.pass", []byte(keyPassword), 0o600)
			g.extra = append(g.extra, "key_password_file: key.pass")
		}},
		{name: "encrypted key without a password file", breakIt: func(g *gateway) { encryptKey(g.t, g.dir, keyPassword, false) },
			errors: []want{{"tls.key", "PEM block 1 (ENCRYPTED PRIVATE KEY, line 1) is encrypted and no password was given; set tls.key_password_file"}}},
		{name: "wrong key password", breakIt: func(g *gateway) {
			encryptKey(g.t, g.dir, keyPassword, false)
			g.write("key.pass", []byte("not the password\n"), 0o600)
			g.extra = append(g.extra, "key_password_file: key.pass")
		}, errors: []want{{"tls.key_password_file", "key.pass: does not decrypt tls.key"}}},
		{name: "password file readable by others", breakIt: func(g *gateway) {
			encryptKey(g.t, g.dir, keyPassword, true)
			g.write("key.pass", []byte(keyPassword+"\n"), 0o640)
			g.extra = append(g.extra, "key_password_file: key.pass")
		}, errors: []want{{"tls.key_password_file", "key.pass: mode 0640 is readable by group/others; chmod 600 it or set tls.allow_readable_key: true"}}},
		{name: "every problem at once", breakIt: func(g *gateway) {
			os.Remove(g.path("ca.pem"))
			os.Chmod(g.path("client.key"), 0o604)
			g.pinPlugin(strings.Repeat("00", 32))
		}, errors: []want{{"tls.ca", "no such file"}, {"tls.key", "mode 0604"}, {"plugins.sha256.sim7600", "checksum mismatch"}}},
	}
}

// TestCheckFindsEveryCase runs the cases through Check, as `cellgate run`
// does before it starts the plugin host.
func TestCheckFindsEveryCase(t *testing.T) {
	forEachCase(t, func(t *testing.T, tc checkCase, _, file string) {
		cfg, _, err := config.Load(config.LoadOptions{File: file, FileExplicit: true})
		if err != nil {
			t.Fatal(err)
		}
		rep := certcheck.Check(cfg, certcheck.Options{})
		expect(t, "error", rep.Errors, tc.errors)
		expect(t, "warning", rep.Warnings, tc.warnings)
		if (rep.Err() == nil) != (len(tc.errors) == 0) {
			t.Errorf("Err() = %v with %d errors", rep.Err(), len(rep.Errors))
		}
	})
}

// forEachCase runs check in a subtest per case of checkCases, on a
// gateway the case broke: bin is where the cellgate binaries are, file the
// gateway's configuration.
func forEachCase(t *testing.T, check func(t *testing.T, tc checkCase, bin, file string)) {
	bin, err := binaries()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range checkCases() {
		t.Run(tc.name, func(t *testing.T) {
			g := newGateway(t, bin)
			tc.breakIt(g)
			check(t, tc, bin, g.config())
		})
	}
}

// expect checks that found holds exactly the wanted findings, in order.
func expect(t *testing.T, kind string, found []certcheck.Finding, wanted []want) {
	t.Helper()
	if len(found) != len(wanted) {
		t.Errorf("%d %ss, want %d: %v", len(found), kind, len(wanted), found)
		return
	}
	for i, w := range wanted {
		if found[i].Key != w.key || !says(found[i].Message, w.words) {
			t.Errorf("%s %d = %q, want key %s saying %q", kind, i, found[i], w.key, w.words)
		}
		if strings.Contains(found[i].Message, keyPassword) {
			t.Errorf("%s %d shows the key password: %q", kind, i, found[i])
		}
	}
}

// TestConfigCheckCommand runs every case through the real cellgate binary:
// exit 1 and each problem on stderr as "key: message" under a count, or
// exit 0 with the warnings; --json says the same as JSON.
func TestConfigCheckCommand(t *testing.T) {
	forEachCase(t, func(t *testing.T, tc checkCase, bin, file string) {
		stdout, stderr, code := run(t, bin, "config", "check", "--config", file)
		wantCode := 0
		if len(tc.errors) > 0 {
			wantCode = 1
		}
		if code != wantCode {
			t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, wantCode, stdout, stderr)
		}
		for _, w := range tc.errors {
			if !containsLine(stderr, "  "+w.key+": ", w.words) {
				t.Errorf("stderr does not have %s: …%s…:\n%s", w.key, w.words, stderr)
			}
		}
		for _, w := range tc.warnings {
			if !containsLine(stderr, "warning: "+w.key+": ", w.words) {
				t.Errorf("stderr does not warn %s: …%s…:\n%s", w.key, w.words, stderr)
			}
		}
		if wantCode == 0 && !strings.HasPrefix(stdout, "# effective configuration") {
			t.Errorf("stdout does not show the effective configuration:\n%s", stdout)
		}
		if strings.Contains(stdout+stderr, keyPassword) {
			t.Errorf("output shows the key password:\n%s\n%s", stdout, stderr)
		}
		checkJSON(t, bin, file, wantCode, tc)
	})
}

func checkJSON(t *testing.T, bin, file string, wantCode int, tc checkCase) {
	t.Helper()
	stdout, stderr, code := run(t, bin, "config", "check", "--json", "--config", file)
	if code != wantCode {
		t.Fatalf("--json: exit %d, want %d\n%s%s", code, wantCode, stdout, stderr)
	}
	var got certcheck.JSON
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatalf("--json: %v:\n%s", err, stdout)
	}
	if got.OK != (wantCode == 0) || len(got.Errors) != len(tc.errors) {
		t.Fatalf("--json: ok %v with %d errors, want %d:\n%s", got.OK, len(got.Errors), len(tc.errors), stdout)
	}
	for i, w := range tc.errors {
		if got.Errors[i].Key != w.key || !says(got.Errors[i].Message, w.words) {
			t.Errorf("--json error %d = %+v, want key %s saying %q", i, got.Errors[i], w.key, w.words)
		}
	}
	for _, w := range tc.warnings {
		found := false
		for _, f := range got.Warnings {
			found = found || (f.Key == w.key && says(f.Message, w.words))
		}
		if !found {
			t.Errorf("--json warnings %+v lack %s: %q", got.Warnings, w.key, w.words)
		}
	}
}

// TestConfigCheckJSONCarriesConfigProblems: a configuration that does not
// load is reported in the same JSON, with the file and line.
func TestConfigCheckJSONCarriesConfigProblems(t *testing.T) {
	bin, err := binaries()
	if err != nil {
		t.Fatal(err)
	}
	g := newGateway(t, bin)
	g.extra = append(g.extra, "renew_before: 400d") // beyond a year
	stdout, _, code := run(t, bin, "config", "check", "--json", "--config", g.config())
	var got certcheck.JSON
	if err := json.Unmarshal([]byte(stdout), &got); err != nil || code != 1 {
		t.Fatalf("exit %d, %v:\n%s", code, err, stdout)
	}
	if len(got.Errors) != 1 || got.Errors[0].Key != "tls.renew_before" || got.Errors[0].Line != 9 || !strings.HasSuffix(got.Errors[0].File, "cellgate.yaml") {
		t.Fatalf("errors = %+v, want tls.renew_before at cellgate.yaml:9", got.Errors)
	}
}

// says reports whether text holds the fragments of words, separated by
// "…", in order.
func says(text, words string) bool {
	for _, frag := range strings.Split(words, "…") {
		i := strings.Index(text, frag)
		if i < 0 {
			return false
		}
		text = text[i+len(frag):]
	}
	return true
}

func containsLine(text, prefix, words string) bool {
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, prefix) && says(l, words) {
			return true
		}
	}
	return false
}

// run runs the cellgate binary in bin and returns stdout, stderr and the
// exit code.
func run(t *testing.T, bin string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(filepath.Join(bin, "cellgate"), args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return out.String(), errb.String(), ee.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), 0
}

// TestDocumentedJSONIsWhatCheckPrints: the --json example of
// docs/certificates.md has the fields of JSON and the message Check gives
// for a 0644 key, byte for byte (the path aside).
func TestDocumentedJSONIsWhatCheckPrints(t *testing.T) {
	doc := testutil.DocBlock(t, "../../docs/certificates.md", "config-check-json")
	dec := json.NewDecoder(strings.NewReader(doc))
	dec.DisallowUnknownFields()
	var shown certcheck.JSON
	if err := dec.Decode(&shown); err != nil {
		t.Fatalf("the documented JSON is not certcheck.JSON: %v", err)
	}
	bin, err := binaries()
	if err != nil {
		t.Fatal(err)
	}
	g := newGateway(t, bin)
	os.Chmod(g.path("client.key"), 0o644)
	cfg, _, err := config.Load(config.LoadOptions{File: g.config(), FileExplicit: true})
	if err != nil {
		t.Fatal(err)
	}
	got := certcheck.NewJSON(nil, nil, certcheck.Check(cfg, certcheck.Options{}))
	if len(got.Errors) != 1 || len(shown.Errors) != 1 {
		t.Fatalf("errors: documented %+v, got %+v", shown.Errors, got.Errors)
	}
	want := strings.ReplaceAll(got.Errors[0].Message, g.path("client.key"), "/etc/cellgate/client.key")
	if shown.Errors[0] != (certcheck.JSONFinding{Key: got.Errors[0].Key, Message: want}) || shown.OK {
		t.Fatalf("documented %+v (ok %v), Check says %+v (ok %v)", shown.Errors[0], shown.OK, got.Errors[0], got.OK)
	}
}
