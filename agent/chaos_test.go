package agent_test

import (
	"math/rand/v2"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cellgate/cellgate/sdk/modemsim"
)

// TestChaosLosesNothing posts readings continuously for 20 s while faults
// hit every part between the agent and the broker, one at a time and at
// random: the server closing the connection, a network loss, a modem
// reboot, the plugin killed with SIGKILL, the broker restarted. Every
// accepted reading must reach the subscriber; duplicates are counted and
// logged.
func TestChaosLosesNothing(t *testing.T) {
	w := newWorld(t, "modem")
	var (
		mu  sync.Mutex
		ids []string
	)
	stop := make(chan struct{})
	posted := make(chan error, 1)
	go func() {
		for {
			select {
			case <-stop:
				posted <- nil
				return
			case <-time.After(100 * time.Millisecond):
			}
			got, err := w.tryPost(10, "chaos")
			if err != nil {
				posted <- err // inputs must keep accepting whatever the uplink suffers
				return
			}
			mu.Lock()
			ids = append(ids, got...)
			mu.Unlock()
		}
	}()

	faults := []struct {
		name string
		do   func() error
	}{
		{"peer close", func() error {
			return w.modem.Fault(modemsim.Fault{Kind: modemsim.FaultPeerClose, Session: 0})
		}},
		{"network loss 1s", func() error {
			return w.modem.Fault(modemsim.Fault{Kind: modemsim.FaultNetworkLoss, Duration: time.Second})
		}},
		{"modem reboot", func() error { return w.modem.Fault(modemsim.Fault{Kind: modemsim.FaultReboot}) }},
		{"plugin SIGKILL", func() error { return syscall.Kill(w.agent.pluginPID(t), syscall.SIGKILL) }},
		{"broker restart", func() error { w.broker.restart(t); return nil }},
	}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	var applied []string
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		time.Sleep(time.Duration(1000+rng.IntN(1500)) * time.Millisecond) // the chaos's own pace
		f := faults[rng.IntN(len(faults))]
		if err := f.do(); err != nil {
			t.Logf("fault %q could not be applied: %v", f.name, err)
			continue
		}
		applied = append(applied, f.name)
	}
	close(stop)
	if err := <-posted; err != nil {
		t.Fatalf("the HTTP input refused readings during the chaos: %v", err)
	}
	t.Logf("faults applied: %v", applied)
	mu.Lock()
	all := append([]string(nil), ids...)
	mu.Unlock()
	w.expectDelivered(all, 3*time.Minute)
}
