package cli_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cellgate/cellgate/internal/testutil"
	"github.com/cellgate/cellgate/sdk/conformance"
)

// verifyBinaries are cellgate, the plugins it certifies and the
// deliberately broken plugin, side by side.
var verifyBinaries = testutil.BuildOnce(
	testutil.Cellgate, testutil.PluginSim7600, testutil.PluginSim7800,
	testutil.Binary{Name: "cellgate-plugin-netstack", Package: "github.com/cellgate/cellgate/plugins/netstack"},
	testutil.Binary{Name: "cellgate-plugin-broken", Package: "github.com/cellgate/cellgate/internal/brokenplugin"},
)

func verifyDir(t *testing.T) string {
	t.Helper()
	dir, err := verifyBinaries()
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// runVerify runs `cellgate plugin verify` with args (the plugin given by
// its file name in the binaries' directory) and returns stdout, stderr and
// the exit status. Verification runs a dozen plugin processes, so the
// bound is generous for a loaded machine.
func runVerify(t *testing.T, plugin string, args ...string) (string, string, int) {
	t.Helper()
	dir := verifyDir(t)
	all := append([]string{"plugin", "verify", "--plugin", filepath.Join(dir, plugin)}, args...)
	return runBinary(t, 10*time.Minute, filepath.Join(dir, "cellgate"), nil, "", all...)
}

// checkRow matches the table row of a check with its result.
func checkRow(name, result string) *regexp.Regexp {
	return regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `\s+` + regexp.QuoteMeta(result) + `\s`)
}

// TestVerifyPassesShippedPlugins is the certification of every plugin this
// repository ships, through the real binary: the SIMCom plugins against
// their emulated modems, netstack against the servers directly.
func TestVerifyPassesShippedPlugins(t *testing.T) {
	cases := []struct {
		name, plugin  string
		args          []string
		notApplicable []string
	}{
		{"sim7600", "cellgate-plugin-sim7600", []string{"--model", "sim7600", "--emulator", "sim7600"}, nil},
		{"sim7800", "cellgate-plugin-sim7800", []string{"--model", "sim7800", "--emulator", "sim7800"}, nil},
		{"netstack", "cellgate-plugin-netstack", []string{"--model", "netstack"}, []string{"other-model-refused", "reboot-mid-session"}},
		{"bg96", "cellgate-plugin-bg96", []string{"--model", "bg96", "--emulator", "bg96"}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.name == "bg96" {
				buildBG96(t)
			}
			stdout, stderr, code := runVerify(t, c.plugin, c.args...)
			if code != 0 {
				t.Fatalf("exit %d, want 0\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
			}
			for _, ch := range conformance.Checks() {
				want := "PASS"
				for _, na := range c.notApplicable {
					if ch.Name == na {
						want = "n/a"
					}
				}
				if !checkRow(ch.Name, want).MatchString(stdout) {
					t.Errorf("no row %q %s in the table:\n%s", ch.Name, want, stdout)
				}
			}
			if !strings.Contains(stdout, "PASSED: ") {
				t.Errorf("no PASSED verdict:\n%s", stdout)
			}
		})
	}
}

// buildBG96 builds the out-of-tree Quectel BG96 example plugin (its own
// module, examples/quectel-bg96) beside cellgate, as `make certify` does.
func buildBG96(t *testing.T) {
	t.Helper()
	src, err := filepath.Abs("../../examples/quectel-bg96")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(verifyDir(t), "cellgate-plugin-bg96"), ".")
	cmd.Dir = src
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the BG96 example plugin in %s: %v\n%s", src, err, out)
	}
}

// TestVerifyFailsBrokenPlugin runs verify against a plugin that answers a
// server with a rogue certificate with a working session: the table names
// the check and why, and the exit status and the error line say so.
func TestVerifyFailsBrokenPlugin(t *testing.T) {
	stdout, stderr, code := runVerify(t, "cellgate-plugin-broken", "--model", "sim7600", "--emulator", "sim7600")
	if code != 1 {
		t.Fatalf("exit %d, want 1\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	row := regexp.MustCompile(`(?m)^rogue-cert-refused\s+FAIL\s+\S+\s+Dial to 127\.0\.0\.1:\d+ succeeded \(session \d\), but a CA the modem was not given signed its certificate: the plugin does not verify the server$`)
	if !row.MatchString(stdout) {
		t.Errorf("the table does not name the rogue-certificate failure:\n%s", stdout)
	}
	// The bug is in server verification only: everything else holds.
	for _, ch := range conformance.Checks() {
		if ch.Name != "rogue-cert-refused" && !checkRow(ch.Name, "PASS").MatchString(stdout) {
			t.Errorf("check %s did not pass:\n%s", ch.Name, stdout)
		}
	}
	if !strings.Contains(stdout, "FAILED: 16 passed, 1 failed, 0 not applicable") {
		t.Errorf("no FAILED verdict with the counts:\n%s", stdout)
	}
	if !strings.Contains(stderr, "cellgate: plugin verify: cellgate-plugin-broken failed 1 of 17 checks: rogue-cert-refused") {
		t.Errorf("stderr does not end with the one-line reason:\n%s", stderr)
	}
}

// TestVerifyJSON checks the report CI reads.
func TestVerifyJSON(t *testing.T) {
	stdout, stderr, code := runVerify(t, "cellgate-plugin-broken", "--model", "sim7600", "--emulator", "sim7600", "--json")
	if code != 1 {
		t.Fatalf("exit %d, want 1\nstderr:\n%s", code, stderr)
	}
	var rep conformance.Report
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("stdout is not one JSON report: %v\n%s", err, stdout)
	}
	if rep.Passed || rep.Model != "sim7600" || rep.Modem != "emulator sim7600" || rep.ContractVersion == "" {
		t.Errorf("report header = %+v", rep)
	}
	if len(rep.Results) != len(conformance.Checks()) {
		t.Fatalf("%d results, want %d", len(rep.Results), len(conformance.Checks()))
	}
	for _, r := range rep.Results {
		want := conformance.Pass
		if r.Name == "rogue-cert-refused" {
			want = conformance.Fail
		}
		if r.Status != want || r.Duration <= 0 || r.Detail == "" {
			t.Errorf("result %+v, want status %s with a duration and a detail", r, want)
		}
	}
	if !strings.Contains(stdout, `"duration_ms": `) {
		t.Errorf("no duration_ms in the JSON:\n%s", stdout)
	}
}

// TestVerifyUsage checks the refusals that name the flag, and the help.
func TestVerifyUsage(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--model", "sim7600"}, "--plugin and --model are required"},
		{[]string{"--plugin", "x", "--model", "sim7600", "--emulator", "sim9999"}, `--emulator "sim9999": want one of`},
		{[]string{"--plugin", "x", "--model", "sim7600", "--port", "/dev/ttyUSB2"}, "--port needs --server"},
		{[]string{"--plugin", "x", "--model", "netstack", "--server", "127.0.0.1:1"}, "--server needs --ca, --cert and --key"},
		{[]string{"--plugin", "x", "--model", "netstack", "--ca", "ca.pem"}, "go with --server"},
	}
	dir := verifyDir(t)
	for _, c := range cases {
		stdout, stderr, code := runCellgate(t, dir, append([]string{"plugin", "verify"}, c.args...)...)
		if code != 2 || !strings.Contains(stderr, c.want) {
			t.Errorf("plugin verify %q: exit %d, stderr %q; want 2 and %q (stdout %q)", c.args, code, stderr, c.want, stdout)
		}
	}
	stdout, _, code := runCellgate(t, dir, "plugin", "verify", "--help")
	if code != 0 || !strings.Contains(stdout, "cellgate plugin verify --plugin PATH --model NAME") || !strings.Contains(stdout, "Examples:") {
		t.Errorf("plugin verify --help: exit %d, stdout:\n%s", code, stdout)
	}
}

func runCellgate(t *testing.T, dir string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(dir, "cellgate"), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return stdout.String(), stderr.String(), ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run cellgate: %v", err)
	}
	return stdout.String(), stderr.String(), 0
}

// TestEchoServerThenVerify starts `cellgate plugin echo-server`, takes the
// verify command it prints, and runs it (--port DEV replaced by the modem
// under test) the way an operator certifying a real modem would: the
// emulator, netstack and an emulated modem on a port reach the echo and
// rogue servers as a modem on the network would.
func TestEchoServerThenVerify(t *testing.T) {
	dir := verifyDir(t)
	out := t.TempDir()
	command := startEchoServer(t, dir, out)
	for _, name := range []string{"client.key", "client.pem", "ca.pem", "rogue-ca.pem"} {
		if _, err := os.Stat(filepath.Join(out, name)); err != nil {
			t.Fatalf("echo-server did not write %s: %v", name, err)
		}
	}
	if fi, err := os.Stat(filepath.Join(out, "client.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("client.key mode = %v (%v), want 0600", fi.Mode().Perm(), err)
	}
	cases := []struct {
		name, plugin, model, modem string
		notApplicable              []string
	}{
		{"sim7600", "cellgate-plugin-sim7600", "sim7600", "--emulator sim7600", []string{"cancel-dial"}},
		{"netstack", "cellgate-plugin-netstack", "netstack", "", []string{"other-model-refused", "reboot-mid-session", "cancel-dial"}},
		// A modem on a port, as a real one is certified: the same modem
		// for every check, which cannot be rebooted or swapped on demand.
		{"sim7600 on a port", "cellgate-plugin-sim7600", "sim7600", "--port " + startModem(t).Path(), []string{"other-model-refused", "reboot-mid-session", "cancel-dial"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cmdline := strings.NewReplacer("PLUGIN", c.plugin, "MODEL", c.model, "--port DEV", c.modem).Replace(command)
			fields := strings.Fields(cmdline)
			if fields[0] != "cellgate" || fields[1] != "plugin" || fields[2] != "verify" || fields[3] != "--plugin" {
				t.Fatalf("printed command %q is not cellgate plugin verify --plugin …", command)
			}
			stdout, stderr, code := runVerify(t, fields[4], fields[5:]...)
			if code != 0 {
				t.Fatalf("%s: exit %d\nstdout:\n%s\nstderr:\n%s", cmdline, code, stdout, stderr)
			}
			for _, na := range c.notApplicable {
				if !checkRow(na, "n/a").MatchString(stdout) {
					t.Errorf("check %s is not n/a:\n%s", na, stdout)
				}
			}
			if !checkRow("rogue-cert-refused", "PASS").MatchString(stdout) || !strings.Contains(stdout, "servers  remote ") {
				t.Errorf("the rogue check did not run against the remote rogue server:\n%s", stdout)
			}
		})
	}
}

// startEchoServer runs cellgate plugin echo-server --out out until the test
// ends and returns the verify command it printed.
func startEchoServer(t *testing.T, dir, out string) string {
	t.Helper()
	cmd := exec.Command(filepath.Join(dir, "cellgate"), "plugin", "echo-server", "--out", out)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := &testutil.SyncBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
		if t.Failed() {
			t.Logf("echo-server stderr:\n%s", stderr.String())
		}
	})
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		io.Copy(io.Discard, stdout)
	}()
	timeout := time.After(time.Minute)
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("echo-server ended without printing a verify command; stderr:\n%s", stderr.String())
			}
			if cmdline, found := strings.CutPrefix(strings.TrimSpace(line), "cellgate plugin verify "); found {
				go func() {
					for range lines {
					}
				}()
				return "cellgate plugin verify " + cmdline
			}
		case <-timeout:
			t.Fatalf("echo-server printed no verify command within a minute; stderr:\n%s", stderr.String())
		}
	}
}
