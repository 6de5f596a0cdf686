package agent_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/cellgate/cellgate/internal/testutil"
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
	out := map[string]string{}
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
		{"modem_clock_jump", (*soak).clockJump},
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

// dropPhase is one spool-full phase under drop_oldest, the only time the
// agent may drop readings to make room: what it reported dropping, and
// which readings were accepted while the generation that could drop them
// ran (the readings it could have dropped are among those, and those not
// yet delivered when it began).
type dropPhase struct {
	start time.Time
	// drops is the agent's drop_oldest count over the phase (its
	// /v1/status, which keeps the count on disk across restarts).
	drops uint64
	// httpPosts: HTTP requests numbered below it began before the
	// generation that could drop was gone (with at most one more, the
	// request in flight when the new one came up).
	httpPosts int
	// udpSent and udpAccepted are the UDP ids sent and the UDP readings
	// the agent had accepted in all when that generation was told to go,
	// with the senders held, so that none came after.
	udpSent     int
	udpAccepted int
}

// swap is where the readings stood when the agent's generation changed
// under a reload.
type swap struct {
	httpPosts            int // HTTP requests begun before the new generation served
	udpSent, udpAccepted int // UDP ids sent, and readings accepted, before the old one was told to go
}

// reload makes the agent read its file again (SIGHUP: a new generation of
// inputs, spool and plugin in the same process) and waits until the new
// generation serves. UDP senders are held throughout and the old
// generation's count of UDP readings is taken first, so that the count
// of UDP readings accepted stays complete across the swap.
func (s *soak) reload() (swap, error) {
	var sw swap
	s.udpGate.Lock()
	defer s.udpGate.Unlock()
	s.stableUDPCount()
	s.mu.Lock()
	sw.udpSent, sw.udpAccepted = s.udpSent, int(s.udpAcc.total())
	s.mu.Unlock()
	a := s.currentAgent()
	generations := strings.Count(a.log(), "cellgate starting")
	if err := a.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		return sw, err
	}
	up := testutil.WaitFor(30*time.Second, func() bool {
		if strings.Count(a.log(), "cellgate starting") <= generations {
			return false
		}
		_, err := s.status()
		return err == nil
	})
	if !up {
		return sw, errors.New("the agent's new generation did not serve within 30s of SIGHUP")
	}
	s.mu.Lock()
	sw.httpPosts = s.httpPosts
	s.mu.Unlock()
	s.observeUDP()
	return sw, nil
}

// spoolFull shrinks the spool to its smallest under policy (a reload by
// SIGHUP), takes the network away so that it fills, waits until the
// agent shows it full (507 answers for reject, drop_oldest drops counted
// in /v1/status for drop_oldest; 20 s at most), then restores the
// network and the limits. Under drop_oldest it books the phase for the
// reconciliation (dropPhase). Whatever fails, the agent is left with the
// normal limits and the network back.
func (s *soak) spoolFull(policy string) (end time.Time, detail string, full bool, err error) {
	refusedBefore := s.refusalCount("507")
	st, err := s.status()
	if err != nil {
		return time.Now(), "", false, fmt.Errorf("status before: %w", err)
	}
	phase := &dropPhase{start: time.Now()}
	dropsBefore := st.Spool.Dropped.DropOldest
	restored := false
	restore := func() (swap, error) {
		restored = true
		s.modem.Fault(modemsim.Fault{Kind: modemsim.FaultNetworkRestore}) // fails if the network is up: fine
		s.writeConfig("256MiB", "reject")
		return s.reload()
	}
	defer func() {
		if !restored {
			restore()
		}
	}()
	s.writeConfig(soakSmallSpool, policy)
	if _, err := s.reload(); err != nil {
		return time.Now(), "", false, err
	}
	s.modem.Fault(modemsim.Fault{Kind: modemsim.FaultNetworkLoss}) // until restored
	var drops uint64
	full = testutil.WaitFor(20*time.Second, func() bool {
		if policy == "reject" {
			return s.refusalCount("507") > refusedBefore
		}
		st, err := s.status()
		drops = st.Spool.Dropped.DropOldest - dropsBefore
		return err == nil && drops > 0
	})
	sw, err := restore()
	if policy == "drop_oldest" {
		// Booked even if the reload failed: the drops happened.
		phase.httpPosts, phase.udpSent, phase.udpAccepted = sw.httpPosts, sw.udpSent, sw.udpAccepted
		if err != nil {
			phase.httpPosts = int(^uint(0) >> 1) // every request so far may have been dropped
		}
		if st, serr := s.status(); serr == nil {
			drops = st.Spool.Dropped.DropOldest - dropsBefore
		}
		phase.drops = drops
		s.mu.Lock()
		s.drops = append(s.drops, phase)
		s.mu.Unlock()
	}
	if err != nil {
		return time.Now(), "", false, fmt.Errorf("restore the limits: %w", err)
	}
	detail = fmt.Sprintf("max_bytes %s when_full %s: %d answers 507", soakSmallSpool, policy, s.refusalCount("507")-refusedBefore)
	if policy == "drop_oldest" {
		detail = fmt.Sprintf("max_bytes %s when_full %s: %d readings dropped", soakSmallSpool, policy, drops)
	}
	if !full {
		detail += " (the spool was not seen full within 20s)"
	}
	return time.Now(), detail, full, nil
}

// clockJump moves the modem's clock 2 to 6 hours, back and forward in
// turn, holds it there 1 to 3 s, and moves it back. The soak's modem
// takes the network's time at every boot, so the plugin has certificate
// validity checked (ignorelocaltime 0); the soak's certificates became
// valid an hour before the run, so a jump back makes every TLS open
// during the hold fail (+CCHOPEN: <id>,15), while a jump forward moves
// only what AT+CCLK reads. Open sessions are not affected (validity is
// checked at the handshake). The fault ends when the clock is moved back;
// it triggered when the agent tried to open a session meanwhile.
func (s *soak) clockJump(rng *rand.Rand) (time.Time, string, bool, error) {
	d := time.Duration(2+rng.IntN(5)) * time.Hour
	if s.clockJumps%2 == 0 {
		d = -d
	}
	before := s.modem.Counters()
	if err := s.modem.Fault(modemsim.Fault{Kind: modemsim.FaultClockJump, Duration: d}); err != nil {
		return time.Now(), "", false, err
	}
	s.clockJumps++
	hold := time.Duration(1000+rng.IntN(2001)) * time.Millisecond
	time.Sleep(hold) // the fault's own length
	after := s.modem.Counters()
	detail := fmt.Sprintf("%+.0fh for %s", d.Hours(), hold.Round(time.Millisecond))
	if after.Reboots != before.Reboots {
		// The reboot set the clock from the network: nothing to undo.
		detail += ", the modem rebooted meanwhile"
	} else if err := s.modem.Fault(modemsim.Fault{Kind: modemsim.FaultClockJump, Duration: -d}); err != nil {
		return time.Now(), detail, true, fmt.Errorf("jump back: %w", err)
	}
	opens := after.Commands["AT+CCHOPEN"] - before.Commands["AT+CCHOPEN"]
	opened := after.SessionsOpened - before.SessionsOpened
	detail += fmt.Sprintf(", %d session opens tried meanwhile, %d succeeded", opens, opened)
	return time.Now(), detail, opens > 0, nil
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
	hit := testutil.WaitFor(5*time.Second, func() bool { return s.refusals() > refusedBefore })
	time.Sleep(time.Duration(500+rng.IntN(1000)) * time.Millisecond) // the fault's own length
	if err := os.Remove(s.fillPath); err != nil {
		s.t.Fatalf("remove the disk filler: %v", err)
	}
	detail := fmt.Sprintf("filled %d KiB, %d refusals", filled>>10, s.refusals()-refusedBefore)
	return time.Now(), detail, hit, nil
}
