package cli_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cellgate/cellgate/internal/testutil"
	"github.com/cellgate/cellgate/sdk/plugintest"
)

// `cellgate run` as systemd runs it (Type=notify, WatchdogSec=, stderr to
// the journal, the key as a credential): READY=1 once it takes readings,
// WATCHDOG=1 from its health loop, a reload that applies a valid file and
// refuses an invalid one without dying, STOPPING=1 and exit 0 on SIGTERM;
// every log line carries its syslog priority and no key twice.
func TestRunUnderSystemd(t *testing.T) {
	bin := binDir(t)
	m := startModem(t)
	dir := t.TempDir()
	notes := listenNotify(t, filepath.Join(dir, "notify"))
	creds := filepath.Join(dir, "credentials")
	writeCredentialKey(t, creds, pkiFiles(t, plugintest.NewPKI(t, plugintest.P256)))
	httpAddr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	statusAddr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	cfgPath := filepath.Join(dir, "cellgate.yaml")
	writeRunConfig(t, cfgPath, "gw-before", m.Path(), bin, httpAddr, statusAddr, dir, "")

	stderr, journal := journalFile(t, dir)
	cmd := exec.Command(filepath.Join(bin, "cellgate"), "run", "--config", cfgPath)
	cmd.Stderr = stderr
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+notes.path, "WATCHDOG_USEC=900000",
		"JOURNAL_STREAM="+journal, "CREDENTIALS_DIRECTORY="+creds)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			out, _ := os.ReadFile(stderr.Name())
			t.Logf("agent stderr:\n%s", out)
		}
	})

	notes.expect(t, "READY=1")
	notes.expect(t, "WATCHDOG=1")
	notes.expect(t, "WATCHDOG=1")
	waitDeviceID(t, cfgPath, "gw-before")

	writeRunConfig(t, cfgPath, "gw-after", m.Path(), bin, httpAddr, statusAddr, dir, "")
	cmd.Process.Signal(syscall.SIGHUP)
	notes.expect(t, "RELOADING=1")
	notes.expect(t, "READY=1")
	waitDeviceID(t, cfgPath, "gw-after")

	writeRunConfig(t, cfgPath, "gw-broken", m.Path(), bin, httpAddr, statusAddr, dir, "  max_byte: 1MiB\n")
	cmd.Process.Signal(syscall.SIGHUP)
	notes.expect(t, "RELOADING=1")
	notes.expect(t, "STATUS=reload refused")
	waitDeviceID(t, cfgPath, "gw-after")

	cmd.Process.Signal(syscall.SIGTERM)
	notes.expect(t, "STOPPING=1")
	select {
	case err := <-exited:
		exited <- err
		if err != nil {
			t.Fatalf("agent ended with %v after SIGTERM, want exit 0", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("agent still running a minute after SIGTERM")
	}
	checkJournalLines(t, stderr.Name())
}

// notifySocket is a service manager's notification socket.
type notifySocket struct {
	path string
	got  chan string
}

func listenNotify(t *testing.T, path string) *notifySocket {
	t.Helper()
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	n := &notifySocket{path: path, got: make(chan string, 1024)}
	go func() {
		buf := make([]byte, 4096)
		for {
			k, err := conn.Read(buf)
			if err != nil {
				return
			}
			n.got <- string(buf[:k])
		}
	}()
	return n
}

// expect waits for a datagram containing want, skipping watchdog pings
// unless a ping is what it waits for.
func (n *notifySocket) expect(t *testing.T, want string) {
	t.Helper()
	deadline := time.After(time.Minute)
	for {
		select {
		case d := <-n.got:
			if strings.Contains(d, want) {
				return
			}
			if d != "WATCHDOG=1" {
				t.Logf("notification %q while waiting for %q", d, want)
			}
		case <-deadline:
			t.Fatalf("no %q notification within a minute", want)
		}
	}
}

// writeCredentialKey puts the client key where systemd puts LoadCredential=
// data, under the name the unit gives it, and the client certificate in
// dir, where the configuration names it.
func writeCredentialKey(t *testing.T, creds, pki string) {
	t.Helper()
	key, err := os.ReadFile(filepath.Join(pki, "client.key"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(creds, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(creds, "tls.key"), key, 0o400); err != nil {
		t.Fatal(err)
	}
	// An empty credential (a placeholder) is skipped: the configured
	// tls.cert stands.
	if err := os.WriteFile(filepath.Join(creds, "tls.cert"), nil, 0o400); err != nil {
		t.Fatal(err)
	}
	cert, err := os.ReadFile(filepath.Join(pki, "client.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(filepath.Dir(creds), "client.pem"), cert, 0o644); err != nil {
		t.Fatal(err)
	}
}

// writeRunConfig writes a host-TLS configuration whose tls.key names a file
// that does not exist: the agent comes up only by using the credential.
// extraSpool is appended to the spool section (to make the file invalid).
func writeRunConfig(t *testing.T, path, deviceID, port, plugins, httpAddr, statusAddr, dir, extraSpool string) {
	t.Helper()
	cfg := fmt.Sprintf(`device_id: %s
modem: {model: sim7600, port: %q}
plugins: {dir: %q}
tls: {mode: host, cert: %q, key: /nonexistent/client.key}
inputs: {http: {listen: %q}}
status: {listen: %q}
spool:
  dir: %q
%suplink:
  mqtt: {broker: "mqtts://127.0.0.1:1"}
log: {level: debug, format: json}
`, deviceID, port, plugins, filepath.Join(dir, "client.pem"), httpAddr, statusAddr, filepath.Join(dir, "spool"), extraSpool)
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
}

// journalFile is the agent's stderr and the JOURNAL_STREAM value naming it.
func journalFile(t *testing.T, dir string) (*os.File, string) {
	t.Helper()
	f, err := os.Create(filepath.Join(dir, "journal"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	return f, fmt.Sprintf("%d:%d", st.Dev, st.Ino)
}

// waitDeviceID waits until `cellgate status --json`, finding the status
// listener in the configuration file cfgPath, reports id. The file may be
// invalid elsewhere: status reads only its status section.
func waitDeviceID(t *testing.T, cfgPath, id string) {
	t.Helper()
	testutil.Eventually(t, time.Minute, "status reports device "+id, func() bool {
		out, _, code := cellgate(t, "", "status", "--config", cfgPath, "--json")
		var st struct {
			DeviceID string `json:"device_id"`
		}
		return code == 0 && json.Unmarshal([]byte(out), &st) == nil && st.DeviceID == id
	})
}

// checkJournalLines checks every line the agent wrote: a syslog priority
// prefix, then one JSON object with no key twice; the plugin's lines among
// them, and the credential noted.
func checkJournalLines(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var pluginLines, credential, refused int
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if len(line) < 4 || line[0] != '<' || line[2] != '>' || !strings.ContainsRune("3467", rune(line[1])) {
			t.Errorf("line without a syslog priority prefix: %q", line)
			continue
		}
		keys, obj := countKeys(t, line[3:])
		for k, n := range keys {
			if n > 1 {
				t.Errorf("key %q %d times in %q", k, n, line)
			}
		}
		if keys["timestamp"] > 0 {
			t.Errorf("line carries timestamp beside time: %q", line)
		}
		if l, _ := obj["logger"].(string); strings.HasPrefix(l, "plugin.") {
			pluginLines++
		}
		msg, _ := obj["msg"].(string)
		if strings.Contains(msg, "tls.key: using the systemd credential") {
			credential++
		}
		if strings.HasPrefix(msg, "reload: configuration not valid") && line[1] == '3' {
			refused++
		}
	}
	if pluginLines == 0 || credential == 0 || refused == 0 {
		t.Errorf("plugin lines %d, credential notes %d, refused reloads at <3> %d: want each at least once", pluginLines, credential, refused)
	}
}

// countKeys counts the top-level keys of a JSON object, duplicates included
// (encoding/json keeps only the last), and decodes it.
func countKeys(t *testing.T, s string) (map[string]int, map[string]any) {
	t.Helper()
	var obj map[string]any
	if err := json.Unmarshal([]byte(s), &obj); err != nil {
		t.Fatalf("not JSON: %q: %v", s, err)
	}
	dec := json.NewDecoder(strings.NewReader(s))
	dec.Token()
	keys := map[string]int{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		keys[tok.(string)]++
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			t.Fatal(err)
		}
	}
	return keys, obj
}

// An agent that cannot start says why at error priority on the journal:
// the configuration's problems and the final line, each marked "<3>".
func TestRunRefusalIsAnErrorInTheJournal(t *testing.T) {
	bin := binDir(t)
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "cellgate.yaml")
	if err := os.WriteFile(cfgPath, []byte("device_id: gw\nspool: {max_byte: 1MiB}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	stderr, journal := journalFile(t, dir)
	cmd := exec.Command(filepath.Join(bin, "cellgate"), "run", "--config", cfgPath)
	cmd.Stderr = stderr
	cmd.Env = append(os.Environ(), "JOURNAL_STREAM="+journal)
	if err := cmd.Run(); cmd.ProcessState == nil || cmd.ProcessState.ExitCode() != 1 {
		t.Fatalf("cellgate run with a bad config: %v, want exit status 1", err)
	}
	out, err := os.ReadFile(stderr.Name())
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(lines) < 3 {
		t.Fatalf("want the problems and the final line, got %q", out)
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, "<3>") {
			t.Errorf("line %q is not marked as an error", l)
		}
	}
	if last := lines[len(lines)-1]; !strings.Contains(last, "nothing started") {
		t.Errorf("last line %q should say nothing started", last)
	}
}

// READY=1 does not wait for the modem or the network: with no modem on the
// port at all, the agent still reports started once the plugin answered,
// and takes readings.
func TestReadyWithoutTheModem(t *testing.T) {
	bin := binDir(t)
	dir := t.TempDir()
	notes := listenNotify(t, filepath.Join(dir, "notify"))
	httpAddr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	cfgPath := filepath.Join(dir, "cellgate.yaml")
	cfg := fmt.Sprintf(`device_id: gw-offline
modem: {model: sim7600, port: %q}
plugins: {dir: %q}
tls: {mode: host}
inputs: {http: {listen: %q}}
status: {listen: %q}
spool: {dir: %q}
uplink:
  mqtt: {broker: "mqtts://127.0.0.1:1"}
`, filepath.Join(dir, "no-modem-here"), bin, httpAddr, fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t)), filepath.Join(dir, "spool"))
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	startRun(t, bin, cfgPath, "NOTIFY_SOCKET="+notes.path)
	notes.expect(t, "READY=1")
	waitDeviceID(t, cfgPath, "gw-offline")
	resp, err := http.Post("http://"+httpAddr+"/v1/readings", "application/json", strings.NewReader(`{"sensor":"t1","value":1}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Errorf("POST /v1/readings without a modem: %s, want 202", resp.Status)
	}
}
