//go:build linux

package atkit_test

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cellgate/cellgate/sdk"
	"github.com/cellgate/cellgate/sdk/at"
	"github.com/cellgate/cellgate/sdk/atkit"
)

// TestSyncThroughGarbageAndEcho: a modem that greets with line noise and
// has echo on answers the probe; Sync then turns echo off.
func TestSyncThroughGarbageAndEcho(t *testing.T) {
	ch, wait := scripted(t, `
<< "\x00\xff\xfe+++garbage \x1b[0m\r\n\r\nRDY\r\n"
> AT
<< "AT\r"
<
< OK
> ATE0
<< "ATE0\r"
<
< OK
end
`)
	res, err := atkit.Sync(testCtx(t), ch, atkit.SyncConfig{})
	if err != nil || res.Unstuck {
		t.Fatalf("Sync = %+v, %v; want in sync without filler", res, err)
	}
	wait()
}

// TestSyncWaitsForABootingModem: a modem that ignores the first probes (it
// is still booting) is asked again until it answers.
func TestSyncWaitsForABootingModem(t *testing.T) {
	ch, line := openChannel(t)
	var asked atomic.Int32
	responder(t, line, 0, func(cmd string) string {
		if cmd == "AT+CGMM" && asked.Add(1) < 3 {
			return "" // booting: nothing
		}
		if cmd == "AT+CGMM" {
			return "\r\nBG96\r\n\r\nOK\r\n"
		}
		return okResponses(cmd)
	})
	probe := atkit.Step{Op: "sync", Cmd: "AT+CGMM", Timeout: 100 * time.Millisecond, Within: time.Minute,
		Check: func(r *at.Response) (bool, error) { return atkit.FirstLine(r) != "", nil }}
	if _, err := atkit.Sync(testCtx(t), ch, atkit.SyncConfig{Probe: probe}); err != nil {
		t.Fatalf("Sync with a booting modem: %v", err)
	}
	if n := asked.Load(); n < 3 {
		t.Fatalf("probe sent %d times, want at least 3", n)
	}
}

// TestSyncCompletesAPayloadADeadDriverLeftOpen: the modem takes every byte
// as the payload of a command whose sender died; Sync's filler completes it
// and says so, so the driver distrusts what that command wrote.
func TestSyncCompletesAPayloadADeadDriverLeftOpen(t *testing.T) {
	const payload = 4096
	ch, line := openChannel(t)
	responder(t, line, payload, okResponses)
	cfg := atkit.SyncConfig{
		Probe:        atkit.Step{Op: "sync", Cmd: "AT", Timeout: 100 * time.Millisecond, Within: 400 * time.Millisecond},
		UnstickBytes: payload,
	}
	res, err := atkit.Sync(testCtx(t), ch, cfg)
	if err != nil || !res.Unstuck {
		t.Fatalf("Sync = %+v, %v; want in sync after filler", res, err)
	}
}

// TestSyncWithoutFillerGivesUpOnASilentModem: with no UnstickBytes a
// silent modem is a timeout naming the probe.
func TestSyncWithoutFillerGivesUpOnASilentModem(t *testing.T) {
	ch, line := openChannel(t)
	responder(t, line, 0, func(string) string { return "" })
	_, err := atkit.Sync(testCtx(t), ch, atkit.SyncConfig{Probe: atkit.Step{Op: "sync", Cmd: "AT", Timeout: 100 * time.Millisecond, Within: 300 * time.Millisecond}})
	var te *sdk.TimeoutError
	if err = atkit.SDKError("open", err, ch, line.Path); !errors.As(err, &te) || te.Op != "open: sync" {
		t.Fatalf("Sync on a silent modem = %#v, want a TimeoutError naming the probe", err)
	}
}

// TestSyncReportsAModemThatRefusesTheProbe: an error answer means the modem
// is alive; it is returned at once, not covered with filler.
func TestSyncReportsAModemThatRefusesTheProbe(t *testing.T) {
	ch, wait := scripted(t, `
> AT+CGMM
<
< +CME ERROR: operation not allowed
end
`)
	res, err := atkit.Sync(testCtx(t), ch, atkit.SyncConfig{Probe: atkit.Step{Op: "sync", Cmd: "AT+CGMM"}, UnstickBytes: 1024})
	wait()
	var cme *at.CMEError
	if !errors.As(err, &cme) || res.Unstuck {
		t.Fatalf("Sync = %+v, %v; want the +CME ERROR and no filler", res, err)
	}
}
