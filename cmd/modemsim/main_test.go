package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.bug.st/serial"
	"go.uber.org/goleak"

	"github.com/cellgate/cellgate/internal/testutil"
	"github.com/cellgate/cellgate/sdk/modemsim"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const waitTimeout = 30 * time.Second

// exchange writes a command and reads until want appears.
func exchange(t *testing.T, p serial.Port, cmd, want string) string {
	t.Helper()
	if _, err := p.Write([]byte(cmd + "\r")); err != nil {
		t.Fatal(err)
	}
	var got []byte
	buf := make([]byte, 256)
	deadline := time.Now().Add(waitTimeout)
	for !strings.Contains(string(got), want) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: got %q, want %q", cmd, got, want)
		}
		n, err := p.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, buf[:n]...)
	}
	return string(got)
}

func TestBinaryRunsUntilSIGTERMAndPrintsCounters(t *testing.T) {
	ms := startModemsim(t, "sim7800")
	p, err := serial.Open(ms.link, &serial.Mode{BaudRate: 115200})
	if err != nil {
		t.Fatalf("open %s: %v\nstderr: %s", ms.link, err, ms.stderr.String())
	}
	p.SetReadTimeout(100 * time.Millisecond)
	exchange(t, p, "ATE0", "OK\r\n")
	if got := exchange(t, p, "AT+CGMM", "OK\r\n"); !strings.Contains(got, "SIMCOM_SIM7800E") {
		t.Errorf("AT+CGMM = %q", got)
	}
	rebootByControl(t, ms.ctl, p)
	p.Close()

	ms.terminate(t)
	var counters modemsim.Counters
	if err := json.Unmarshal([]byte(ms.stdout.String()), &counters); err != nil {
		t.Fatalf("stdout is not the counters JSON: %v\n%q", err, ms.stdout.String())
	}
	if counters.Commands["AT+CGMM"] != 1 || counters.Reboots != 1 || counters.SerialModemToHostBytes == 0 {
		t.Errorf("counters = %+v", counters)
	}
	if _, err := os.Lstat(ms.link); !os.IsNotExist(err) {
		t.Errorf("link not removed: %v", err)
	}
	if _, err := os.Stat(ms.ctl); !os.IsNotExist(err) {
		t.Errorf("control socket not removed: %v", err)
	}
	if b, err := os.ReadFile(ms.trace); err != nil || !strings.Contains(string(b), `host>modem "AT+CGMM\r"`) {
		t.Errorf("trace file: %v\n%s", err, b)
	}
	if !strings.Contains(ms.stderr.String(), "modem ready") {
		t.Errorf("stderr lacks the ready log line: %s", ms.stderr.String())
	}
}

// modemsimProc is the modemsim binary running with its link, control
// socket and trace file in a temporary directory.
type modemsimProc struct {
	cmd              *exec.Cmd
	link, ctl, trace string
	stdout, stderr   testutil.SyncBuffer
	exited           chan error // cmd.Wait's result, put back once read
}

// startModemsim builds and starts modemsim as model, kills it at cleanup,
// and returns once its link and control socket exist.
func startModemsim(t *testing.T, model string) *modemsimProc {
	t.Helper()
	bin := testutil.Build(t, testutil.Binary{Name: "modemsim", Package: "github.com/cellgate/cellgate/cmd/modemsim"})
	dir := t.TempDir()
	ms := &modemsimProc{
		link:   filepath.Join(dir, "ttyUSB2"),
		ctl:    filepath.Join(dir, "ctl.sock"),
		trace:  filepath.Join(dir, "trace.txt"),
		exited: make(chan error, 1),
	}
	ms.cmd = exec.Command(bin, "--model", model, "--link", ms.link, "--state-dir", filepath.Join(dir, "state"),
		"--baud", "115200", "--trace", ms.trace, "--control", ms.ctl, "--host", "gw.test=127.0.0.1")
	ms.cmd.Stdout, ms.cmd.Stderr = &ms.stdout, &ms.stderr
	if err := ms.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { ms.exited <- ms.cmd.Wait() }()
	t.Cleanup(func() {
		ms.cmd.Process.Kill()
		<-ms.exited
	})
	testutil.Eventually(t, waitTimeout, "the link and control socket", func() bool {
		_, e1 := os.Lstat(ms.link)
		_, e2 := os.Stat(ms.ctl)
		return e1 == nil && e2 == nil
	})
	return ms
}

// rebootByControl asks modemsim's control socket ctl for a reboot and
// waits for the rebooted modem's PB DONE on p.
func rebootByControl(t *testing.T, ctl string, p serial.Port) {
	t.Helper()
	c, err := net.Dial("unix", ctl)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(waitTimeout))
	r := bufio.NewReader(c)
	c.Write([]byte("fault reboot\n"))
	if line, _ := r.ReadString('\n'); line != "ok\n" {
		t.Errorf("fault reboot answered %q", line)
	}
	exchange(t, p, "", "PB DONE\r\n")
}

// terminate sends SIGTERM and fails t unless modemsim exits cleanly.
func (ms *modemsimProc) terminate(t *testing.T) {
	t.Helper()
	if err := ms.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-ms.exited:
		ms.exited <- err
		if err != nil {
			t.Fatalf("modemsim exited with %v\nstderr: %s", err, ms.stderr.String())
		}
	case <-time.After(waitTimeout):
		t.Fatal("modemsim did not exit after SIGTERM")
	}
}

func TestBadFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{}, 2, "--model is required"},
		{[]string{"--model", "sim900", "--link", filepath.Join(t.TempDir(), "x")}, 1, `unknown model \"sim900\"`},
		{[]string{"--model", "sim7600", "--host", "nonsense"}, 2, "want NAME=IP"},
		{[]string{"--model", "sim7600", "extra"}, 2, "unexpected arguments"},
		{[]string{"--model", "sim7600", "--log-level", "loud"}, 2, "--log-level"},
		{[]string{"--model", "sim7600", "--link", filepath.Join(t.TempDir(), "x"), "--net-delay", "-1s"}, 1, "NetworkDelay -1s is negative"},
		{[]string{"--model", "sim7600", "--link", filepath.Join(t.TempDir(), "x"), "--net-rate", "-5"}, 1, "NetworkRate -5 is negative"},
		{[]string{"--model", "sim7600", "--net-delay", "soon"}, 2, "-net-delay"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(tc.args, &stdout, &stderr); code != tc.code || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("run(%q) = %d, stderr %q; want %d and %q", tc.args, code, stderr.String(), tc.code, tc.want)
		}
	}
}
