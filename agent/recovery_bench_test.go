package agent_test

import (
	"syscall"
	"testing"
	"time"

	"github.com/cellgate/cellgate/sdk/modemsim"
)

// BenchmarkRecovery times, from outside, how long the real agent, plugin
// and emulated modem take to deliver a reading again after a fault, and
// how long a fresh start takes to deliver its first: from the process
// start, or the fault, to the broker's acknowledgement of a reading posted
// at that moment (the agent's status counts acknowledged readings). The
// in-run baseline is the same post-to-acknowledgement time on a healthy
// link (it includes the 500 ms batching delay, as the others do).
// Reported in seconds: startup, peer_close (the broker closes the
// connection: modemsim's peer-close fault), reboot (the module resets, as
// AT+CRESET) and plugin_kill (SIGKILL to the plugin process).
func BenchmarkRecovery(b *testing.B) {
	bin, dir, _, broker := startPKIBroker(b)
	gen := newAirGen(2)

	start := time.Now()
	a := startAirAgent(b, bin, dir, broker.Addr, "compact", "modem", 4*time.Minute)
	defer a.stop()
	a.post(b, gen.next(1))
	b.ReportMetric(time.Since(start).Seconds(), "startup-s")

	var healthy time.Duration
	const rounds = 5
	for range rounds {
		t := time.Now()
		a.post(b, gen.next(1))
		healthy += time.Since(t)
	}
	b.ReportMetric(healthy.Seconds()/rounds, "healthy-s")

	for _, f := range []struct {
		name   string
		inject func()
	}{
		{"peer_close", func() { a.fault(b, modemsim.FaultPeerClose) }},
		{"reboot", func() { a.fault(b, modemsim.FaultReboot) }},
		{"plugin_kill", func() {
			pid := childNamed(a.cmd.Process.Pid, "cellgate-plugin")
			if pid == 0 {
				b.Fatal("no plugin process under the agent")
			}
			if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
				b.Fatal(err)
			}
		}},
	} {
		t := time.Now()
		f.inject()
		a.post(b, gen.next(1))
		b.ReportMetric(time.Since(t).Seconds(), f.name+"-s")
	}
}

func (a *airAgent) fault(b *testing.B, kind modemsim.FaultKind) {
	b.Helper()
	if err := a.modem.Fault(modemsim.Fault{Kind: kind}); err != nil {
		b.Fatalf("modemsim %s: %v", kind, err)
	}
}
