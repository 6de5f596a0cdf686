package agent_test

import (
	"testing"
	"time"

	"github.com/cellgate/cellgate/sdk/modemsim"
)

// TestPeerCloseRecovery closes the modem's TCP connection to the broker as
// if the network had (the emulated modem reports +CCH_PEER_CLOSED), then
// measures the time to the next acknowledged delivery. The design target
// is 3 s; the figure is logged, and the test fails only if delivery does
// not resume at all.
func TestPeerCloseRecovery(t *testing.T) {
	w := newWorld(t, "modem")
	ids := w.post(10, "before")
	w.expectDelivered(ids, 60*time.Second)
	opened := w.modem.Counters().SessionsOpened
	if err := w.modem.Fault(modemsim.Fault{Kind: modemsim.FaultPeerClose, Session: 0}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	ids = w.post(10, "after")
	w.expectDelivered(ids, 60*time.Second)
	t.Logf("peer close → next acknowledged delivery: %s (target ≤ 3s)", time.Since(start).Round(10*time.Millisecond))
	if w.modem.Counters().SessionsOpened <= opened {
		t.Fatal("delivery resumed without a new modem session: the peer close was not noticed")
	}
}

// TestModemRebootLosesNothing reboots the emulated modem mid-stream: the
// plugin sees the boot URCs, brings the modem up again, re-provisions the
// SSL context, and the uplink reconnects through a new session.
func TestModemRebootLosesNothing(t *testing.T) {
	w := newWorld(t, "modem")
	ids := w.post(50, "before")
	w.expectDelivered(ids[:1], 60*time.Second)
	if err := w.modem.Fault(modemsim.Fault{Kind: modemsim.FaultReboot}); err != nil {
		t.Fatal(err)
	}
	ids = append(ids, w.post(50, "during")...)
	w.expectDelivered(ids, 90*time.Second)
	if n := w.modem.Counters().Reboots; n < 1 {
		t.Fatalf("the modem did not reboot (reboots=%d)", n)
	}
}
