package pluginhost_test

import (
	"context"
	"crypto/rand"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cellgate/cellgate/agent/pluginhost"
	"github.com/cellgate/cellgate/internal/testutil"
	"github.com/cellgate/cellgate/sdk"
	"github.com/cellgate/cellgate/sdk/modemsim"
	"github.com/cellgate/cellgate/sdk/plugintest"
)

// TestRealSIM7600PluginRestartsMidSession runs the real plugin binary
// against the emulated modem (a real pty, real mutual TLS to a server on
// loopback), kills the plugin with SIGKILL in the middle of a session, and
// checks that the session says so within a second, that the host restarts
// the plugin and replays Open and Provision against the modem, and that a
// new session carries data again.
func TestRealSIM7600PluginRestartsMidSession(t *testing.T) {
	modem, h, host, port := startReadySIM7600(t)
	if info, ok := h.Info(); !ok || !strings.Contains(strings.ToUpper(info.Model), "SIM7600") {
		t.Fatalf("Info() = %+v, %v; want the emulated SIM7600", info, ok)
	}
	pid1 := h.PID()
	req := sdk.DialRequest{Host: host, Port: port, Profile: 0, Mode: sdk.DialModemTLS}
	sess := dialSIM7600(t, h, req, "Dial")
	roundTrip(t, sess, "through the first plugin\n")
	before := modem.Counters().Commands

	killEndsTheSessionWithinASecond(t, sess, pid1)

	// Dial waits for the replacement (or retries on it if it meets the
	// dying plugin first).
	again := dialSIM7600(t, h, req, "Dial after the restart")
	if h.Restarts() != 1 || h.PID() == pid1 {
		t.Fatalf("after the kill: Restarts() = %d, PID() = %d (killed %d); want one restart", h.Restarts(), h.PID(), pid1)
	}
	data := make([]byte, 64<<10)
	rand.Read(data)
	roundTrip(t, again, string(data))

	checkBringUpReplayed(t, before, modem.Counters().Commands)
	if !processGone(pid1) {
		t.Errorf("killed plugin pid %d still exists", pid1)
	}
}

// startReadySIM7600 starts the emulated SIM7600, a mutual-TLS echo server on
// loopback (its host and port are returned to dial) and a Host on the real
// sim7600 plugin, and waits until the Host is ready.
func startReadySIM7600(t *testing.T) (*modemsim.Modem, *pluginhost.Host, string, int) {
	t.Helper()
	bin := testutil.Build(t, testutil.PluginSim7600)
	modem, err := modemsim.Start(modemsim.Config{Model: "sim7600", Baud: -1})
	if err != nil {
		t.Fatalf("start the emulated SIM7600: %v", err)
	}
	t.Cleanup(func() { modem.Close() })
	pki := plugintest.NewPKI(t, plugintest.P256)
	srv := plugintest.StartServer(t, plugintest.MutualTLS(pki, 0), plugintest.Echo)
	host, port := srv.HostPort()
	h := startSIM7600Host(t, bin, modem, pki)
	if err := h.Ready(testCtx(t, time.Minute)); err != nil {
		t.Fatalf("Ready: %v", err)
	}
	return modem, h, host, port
}

// startSIM7600Host starts a Host on the sim7600 plugin bin, configured for
// modem with pki's client bundle, logging to a recorder printed if the test
// fails, and closes it at cleanup.
func startSIM7600Host(t *testing.T, bin string, modem *modemsim.Modem, pki *plugintest.PKI) *pluginhost.Host {
	t.Helper()
	sum, err := sdk.FileSHA256(bin)
	if err != nil {
		t.Fatal(err)
	}
	log := &recorder{store: &recordStore{}}
	t.Cleanup(func() {
		if t.Failed() {
			for _, l := range log.lines() {
				t.Log("host log: " + l)
			}
		}
	})
	h, err := pluginhost.Start(testCtx(t, 10*time.Second), pluginhost.Config{
		Model:  "sim7600",
		Dirs:   []string{filepath.Dir(bin)},
		SHA256: sum,
		Env:    testutil.RaceEnv,
		Modem:  sdk.ModemConfig{Port: modem.Path(), RegistrationTimeout: 30 * time.Second},
		Bundle: &sdk.Bundle{Profile: 0, CA: pki.CA.CertPEM, Cert: pki.Client.CertPEM, Key: pki.Client.KeyPEM},
		Logger: slog.New(log),
		// Frequent pings exercise the health check alongside real traffic.
		HealthInterval: 200 * time.Millisecond,
		HealthTimeout:  2 * time.Second,
		Backoff:        pluginhost.Backoff{Initial: 100 * time.Millisecond, Max: time.Second},
	})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := h.Close(testCtx(t, 30*time.Second)); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return h
}

// dialSIM7600 opens a session through h, closed at cleanup; what names the
// step in a failure.
func dialSIM7600(t *testing.T, h *pluginhost.Host, req sdk.DialRequest, what string) sdk.Session {
	t.Helper()
	sess, err := h.Dial(testCtx(t, time.Minute), req)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	t.Cleanup(func() { sess.Close(context.Background()) })
	return sess
}

// killEndsTheSessionWithinASecond SIGKILLs the plugin pid while a Recv
// waits on sess, and checks that the Recv fails with sdk.ErrPluginExited
// within a second.
func killEndsTheSessionWithinASecond(t *testing.T, sess sdk.Session, pid int) {
	t.Helper()
	recvErr := make(chan error, 1)
	go func() {
		_, err := sess.Recv(testCtx(t, 30*time.Second))
		recvErr <- err
	}()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.NewTimer(time.Second)
	defer killed.Stop()
	select {
	case err := <-recvErr:
		if !errors.Is(err, sdk.ErrPluginExited) {
			t.Fatalf("Recv after the plugin's SIGKILL = %v, want sdk.ErrPluginExited", err)
		}
	case <-killed.C:
		t.Fatal("Recv did not fail within 1 s of the plugin's SIGKILL")
	}
}

// checkBringUpReplayed checks that the replay reached the modem: bring-up
// and provisioning commands were sent again after the kill (before and
// after are the modem's command counts then and now).
func checkBringUpReplayed(t *testing.T, before, after map[string]int64) {
	t.Helper()
	for _, cmd := range []string{"AT+CMEE", "AT+CCERTLIST", "AT+CSSLCFG"} {
		if after[cmd] <= before[cmd] {
			t.Errorf("%s sent %d times before the kill and %d after: Open/Provision not replayed", cmd, before[cmd], after[cmd])
		}
	}
}
