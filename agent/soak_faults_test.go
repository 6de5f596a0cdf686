package agent_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"syscall"
	"time"

	"github.com/cellgate/cellgate/sdk/modemsim"
)

// faultKind is one kind of damage the soak does. apply returns when the
// fault is in place, or, for a lasting one the soak lifts itself (the
// spool and disk phases), when it has been lifted; it returns when the
// fault ends (for a network loss, in the future), what it did, and
// whether it had its effect.
type faultKind struct {
	name  string
	apply func(s *soak, rng *rand.Rand) (end time.Time, detail string, triggered bool, err error)
}

// unavailableFaults are the kinds the issue asks for that this soak cannot
// apply, with why; they are reported, never faked.
func (s *soak) unavailableFaults() map[string]string {
	out := map[string]string{
		"modem_clock_jump": "sdk/modemsim has no clock fault (its fault kinds: peer-close, network-loss, network-restore, reboot, garbage, drop-response, delay-response, sim-busy)",
	}
	if s.disk != "" {
		out["disk_full"] = s.disk
	}
	return out
}

func (s *soak) faultKinds() []*faultKind {
	now := func() time.Time { return time.Now() }
	modem := func(f modemsim.Fault) (time.Time, string, bool, error) {
		return now(), f.String(), true, s.modem.Fault(f)
	}
	kinds := []*faultKind{
		{"peer_close", func(s *soak, _ *rand.Rand) (time.Time, string, bool, error) {
			return modem(modemsim.Fault{Kind: modemsim.FaultPeerClose, Session: modemsim.PeerCloseAll})
		}},
		{"network_loss", func(s *soak, rng *rand.Rand) (time.Time, string, bool, error) {
			d := time.Duration(1000+rng.IntN(9001)) * time.Millisecond
			_, detail, ok, err := modem(modemsim.Fault{Kind: modemsim.FaultNetworkLoss, Duration: d})
			return now().Add(d), detail, ok, err
		}},
		{"modem_reboot", func(s *soak, _ *rand.Rand) (time.Time, string, bool, error) {
			return modem(modemsim.Fault{Kind: modemsim.FaultReboot})
		}},
		{"serial_garbage", func(s *soak, rng *rand.Rand) (time.Time, string, bool, error) {
			return modem(modemsim.Fault{Kind: modemsim.FaultGarbage, Bytes: 1 + rng.IntN(512)})
		}},
		{"serial_dropped_response", func(s *soak, _ *rand.Rand) (time.Time, string, bool, error) {
			return modem(modemsim.Fault{Kind: modemsim.FaultDropResponse})
		}},
		{"plugin_sigkill", func(s *soak, _ *rand.Rand) (time.Time, string, bool, error) {
			pid := childNamed(s.currentAgent().cmd.Process.Pid, "cellgate-plugin")
			if pid == 0 {
				return now(), "", false, errors.New("no plugin process (it is being restarted)")
			}
			return now(), fmt.Sprintf("pid %d", pid), true, syscall.Kill(pid, syscall.SIGKILL)
		}},
		{"agent_sigkill", (*soak).killAgent},
		{"broker_restart", func(s *soak, _ *rand.Rand) (time.Time, string, bool, error) {
			at := now()
			s.broker.restart(s.t)
			return at, "SIGTERM, start", true, nil
		}},
		{"spool_full_reject", func(s *soak, _ *rand.Rand) (time.Time, string, bool, error) { return s.spoolFull("reject") }},
		{"spool_full_drop_oldest", func(s *soak, _ *rand.Rand) (time.Time, string, bool, error) { return s.spoolFull("drop_oldest") }},
	}
	if s.disk == "" {
		kinds = append(kinds, &faultKind{"disk_full", (*soak).diskFull})
	}
	return kinds
}

// inject applies k and books it; a fault that does not apply (a peer
// close with no session open, during a network loss) is logged and not
// counted; inject reports whether it applied.
func (s *soak) inject(k *faultKind, rng *rand.Rand) bool {
	start := time.Now()
	end, detail, triggered, err := k.apply(s, rng)
	if err != nil {
		s.t.Logf("%s  %-24s not applied: %v", start.Format("15:04:05.000"), k.name, err)
		return false
	}
	s.t.Logf("%s  %-24s %s", start.Format("15:04:05.000"), k.name, detail)
	s.mu.Lock()
	s.faults = append(s.faults, &faultRecord{kind: k.name, start: start, end: end, detail: detail, triggered: triggered, recovery: -1})
	s.mu.Unlock()
	return true
}

// killAgent kills the agent with SIGKILL and starts it again on the same
// spool. UDP senders are held meanwhile, so that the count of UDP
// readings the dying agent accepted is complete.
func (s *soak) killAgent(_ *rand.Rand) (time.Time, string, bool, error) {
	s.udpGate.Lock()
	defer s.udpGate.Unlock()
	s.stableUDPCount()
	at := time.Now()
	s.currentAgent().kill(s.t)
	s.startAgent()
	s.observeUDP()
	return at, fmt.Sprintf("SIGKILL, restarted in %s", time.Since(at).Round(time.Millisecond)), true, nil
}

// spoolFull shrinks the spool to its smallest under policy (a reload by
// SIGHUP), takes the network away so that it fills, waits until the
// agent shows it full (507 answers for reject, drop_oldest drops counted
// in /v1/status for drop_oldest; 20 s at most), then restores the
// network and the limits.
func (s *soak) spoolFull(policy string) (time.Time, string, bool, error) {
	refusedBefore := s.refusalCount("507")
	st, err := s.status()
	if err != nil {
		return time.Now(), "", false, fmt.Errorf("status before: %w", err)
	}
	dropsBefore := st.Spool.Dropped.DropOldest
	s.writeConfig(soakSmallSpool, policy)
	if err := s.currentAgent().cmd.Process.Signal(syscall.SIGHUP); err != nil {
		return time.Now(), "", false, err
	}
	s.modem.Fault(modemsim.Fault{Kind: modemsim.FaultNetworkLoss}) // until restored
	var drops uint64
	full := pollUntil(20*time.Second, func() bool {
		if policy == "reject" {
			return s.refusalCount("507") > refusedBefore
		}
		st, err := s.status()
		drops = st.Spool.Dropped.DropOldest - dropsBefore
		return err == nil && drops > 0
	})
	s.modem.Fault(modemsim.Fault{Kind: modemsim.FaultNetworkRestore})
	s.writeConfig("256MiB", "reject")
	if err := s.currentAgent().cmd.Process.Signal(syscall.SIGHUP); err != nil {
		return time.Now(), "", false, err
	}
	detail := fmt.Sprintf("max_bytes %s when_full %s: %d answers 507", soakSmallSpool, policy, s.refusalCount("507")-refusedBefore)
	if policy == "drop_oldest" {
		detail = fmt.Sprintf("max_bytes %s when_full %s: %d readings dropped", soakSmallSpool, policy, drops)
	}
	if !full {
		detail += " (the spool was not seen full within 20s)"
	}
	return time.Now(), detail, full, nil
}

func (s *soak) refusalCount(status string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refused[status]
}

// diskFull fills the spool's tmpfs with a file until the file system has
// no room left, holds it until an input refuses (5 s at most) and one
// second more, then removes the file.
func (s *soak) diskFull(rng *rand.Rand) (time.Time, string, bool, error) {
	f, err := os.OpenFile(s.fillPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return time.Now(), "", false, err
	}
	filled := 0
	for _, chunk := range []int{1 << 20, 4 << 10, 512} {
		buf := make([]byte, chunk)
		for {
			n, err := f.Write(buf)
			filled += n
			if err != nil {
				break
			}
		}
	}
	f.Close()
	refusedBefore := s.refusals()
	hit := pollUntil(5*time.Second, func() bool { return s.refusals() > refusedBefore })
	time.Sleep(time.Duration(500+rng.IntN(1000)) * time.Millisecond) // the fault's own length
	if err := os.Remove(s.fillPath); err != nil {
		s.t.Fatalf("remove the disk filler: %v", err)
	}
	detail := fmt.Sprintf("filled %d KiB, %d refusals", filled>>10, s.refusals()-refusedBefore)
	return time.Now(), detail, hit, nil
}
