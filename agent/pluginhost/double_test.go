package pluginhost_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"go.uber.org/goleak"
	"google.golang.org/grpc"

	"github.com/cellgate/cellgate/sdk"
)

// The test binary plays two roles: the test suite, and (with envRole set)
// the plugin the Host under test supervises, so the host is exercised
// against a real process over real go-plugin gRPC.
//
// double is a TEST DOUBLE, NOT A MODEM: it opens no serial port and speaks
// no AT commands. It implements sdk.SecureTransport in memory and
// misbehaves on request, so the host's supervision (restart, backoff, hang
// detection, Stop before kill, replay) can be checked against a real
// process. Modem behaviour is tested against modemsim by sdk/plugintest and
// by this package's sim7600 test.
//
// It appends what it does to a journal file (envJournal), one line per
// event, "<pid> <event> <detail>", which is also how its script counts
// calls across the processes of one test. Script directives (envScript,
// comma-separated), where N counts Open calls over all processes:
//
//	open-fail=N   the first N Opens fail with +CME ERROR: SIM busy
//	open-crash=N  the first N Opens SIGKILL their own process
//	open-hang=N   the first N Opens block until their ctx ends
//	wrong-modem   Open finds a SIM7800 on the port (ModelMismatchError)
//	bad-bundle    Provision refuses the bundle (BundleError)
const (
	envRole     = "PLUGINHOST_TEST_ROLE"
	envJournal  = "PLUGINHOST_TEST_JOURNAL"
	envScript   = "PLUGINHOST_TEST_SCRIPT"
	doubleModel = "testdouble"
)

func TestMain(m *testing.M) {
	if os.Getenv(envRole) == "double" {
		d, err := newDouble()
		if err != nil {
			fmt.Fprintln(os.Stderr, "test double:", err)
			os.Exit(2)
		}
		d.record("start")
		sdk.Serve(d)
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

type double struct {
	log     *slog.Logger
	journal string
	script  map[string]int

	mu sync.Mutex // serialises journal appends within the process
}

func newDouble() (*double, error) {
	d := &double{log: sdk.NewLogger(slog.LevelDebug), journal: os.Getenv(envJournal), script: map[string]int{}}
	if d.journal == "" {
		return nil, fmt.Errorf("%s is not set", envJournal)
	}
	for _, dir := range strings.Split(os.Getenv(envScript), ",") {
		if dir == "" {
			continue
		}
		name, val, found := strings.Cut(dir, "=")
		n := 1
		if found {
			var err error
			if n, err = strconv.Atoi(val); err != nil {
				return nil, fmt.Errorf("script directive %q: %v", dir, err)
			}
		}
		d.script[name] = n
	}
	return d, nil
}

// record appends one journal line. A failure to write it would make the
// test's counts wrong, so it ends the process loudly.
func (d *double) record(event string, detail ...string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	f, err := os.OpenFile(d.journal, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err == nil {
		_, err = fmt.Fprintf(f, "%d %s %s\n", os.Getpid(), event, strings.Join(detail, " "))
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		d.log.Error("test double: journal write failed", "error", err)
		os.Exit(3)
	}
}

// count returns how many journal lines of event exist, over all processes.
func (d *double) count(event string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	data, err := os.ReadFile(d.journal)
	if err != nil {
		d.log.Error("test double: journal read failed", "error", err)
		os.Exit(3)
	}
	n := 0
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[1] == event {
			n++
		}
	}
	return n
}

func (d *double) Open(ctx context.Context, cfg sdk.ModemConfig) (sdk.ModemInfo, error) {
	n := d.count("open")
	d.record("open", "port="+cfg.Port, "model="+cfg.Model, "apn="+cfg.APN)
	switch {
	case n < d.script["open-crash"]:
		d.log.Warn("test double: crashing in Open as scripted")
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	case n < d.script["open-hang"]:
		<-ctx.Done()
		return sdk.ModemInfo{}, fmt.Errorf("test double: Open hung as scripted: %w", ctx.Err())
	case n < d.script["open-fail"]:
		return sdk.ModemInfo{}, &sdk.ModemError{Op: "AT+CPIN?", Code: 14, Text: "SIM busy"}
	case d.script["wrong-modem"] > 0:
		return sdk.ModemInfo{}, &sdk.ModelMismatchError{Want: cfg.Model, Got: "SIMCOM_SIM7800E"}
	case cfg.Model != doubleModel:
		return sdk.ModemInfo{}, &sdk.ModelMismatchError{Want: doubleModel, Got: cfg.Model}
	}
	return sdk.ModemInfo{
		Model: "CELLGATE-TEST-DOUBLE", Manufacturer: "cellgate tests", Revision: "double-1",
		IMEI: "990000000000001", Registration: "home", SignalRSSI: 20, SignalBER: 99,
	}, nil
}

func (d *double) Provision(_ context.Context, b sdk.Bundle) (sdk.ProvisionReport, error) {
	sum := sha256.Sum256([]byte(string(b.CA) + "\x00" + string(b.Cert) + "\x00" + string(b.Key)))
	d.record("provision", fmt.Sprintf("profile=%d", b.Profile), fmt.Sprintf("bundle=%x", sum[:8]))
	if d.script["bad-bundle"] > 0 {
		return sdk.ProvisionReport{}, &sdk.BundleError{Field: "key", Reason: "does not match the certificate"}
	}
	return sdk.ProvisionReport{Profile: b.Profile, Kept: []string{"ca", "cert", "key"}, AuthMode: 2}, nil
}

func (d *double) ListCerts(context.Context) ([]string, error) { return nil, nil }

func (d *double) DeleteCert(_ context.Context, name string) error {
	return &sdk.ModemError{Op: "AT+CCERTDELE", Code: -1, Text: "the test double stores no file " + name}
}

func (d *double) Dial(_ context.Context, req sdk.DialRequest) (sdk.Session, error) {
	d.record("dial", fmt.Sprintf("%s:%d", req.Host, req.Port))
	return &echoSession{data: make(chan []byte, 16), closed: make(chan struct{})}, nil
}

// Stop records whether it came as the host's RPC or from sdk.Serve's own
// shutdown path, which runs after the host disconnects.
func (d *double) Stop(ctx context.Context) error {
	via := "shutdown"
	if _, ok := grpc.Method(ctx); ok {
		via = "rpc"
	}
	d.record("stop", "via="+via)
	return nil
}

// echoSession returns what was sent.
type echoSession struct {
	data      chan []byte
	closed    chan struct{}
	closeOnce sync.Once
}

func (s *echoSession) ID() int { return 0 }

func (s *echoSession) Send(ctx context.Context, p []byte) error {
	select {
	case s.data <- append([]byte(nil), p...):
		return nil
	case <-s.closed:
		return sdk.ErrSessionClosed
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *echoSession) Recv(ctx context.Context) (sdk.Frame, error) {
	select {
	case p := <-s.data:
		return sdk.Frame{Data: p}, nil
	case <-s.closed:
		return sdk.Frame{}, io.EOF
	case <-ctx.Done():
		return sdk.Frame{}, ctx.Err()
	}
}

func (s *echoSession) Close(context.Context) error {
	s.closeOnce.Do(func() { close(s.closed) })
	return nil
}
