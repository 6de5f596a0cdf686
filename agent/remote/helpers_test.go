package remote

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"sort"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testNow is the gateway's clock in these tests.
var testNow = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)

// testKey is RFC 8032's first Ed25519 test vector: a key anyone can check.
func testKey(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	seed, err := hex.DecodeString("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
	if err != nil {
		t.Fatal(err)
	}
	return ed25519.NewKeyFromSeed(seed)
}

// otherKey is a second key, trusted under another ID or not at all.
func otherKey(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	seed := make([]byte, ed25519.SeedSize)
	seed[0] = 7
	return ed25519.NewKeyFromSeed(seed)
}

func testPolicy(t testing.TB) Policy {
	return Policy{
		DeviceID:  "gw-0001",
		Trusted:   map[string]ed25519.PublicKey{"ops-2026": testKey(t).Public().(ed25519.PublicKey)},
		Now:       testNow,
		Committed: 41,
	}
}

// push is a valid envelope for testPolicy, changed by edit before it is
// signed with key (testKey when nil).
func push(t testing.TB, version uint64, overlay string, edit func(e *Envelope), key ed25519.PrivateKey) []byte {
	t.Helper()
	e := NewEnvelope("gw-0001", version, testNow.Add(-time.Minute), testNow.Add(7*24*time.Hour), "ops-2026", overlay)
	if edit != nil {
		edit(e)
	}
	if key == nil {
		key = testKey(t)
	}
	e.Sign(key)
	b, err := e.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// fakeClock is a hand-driven Clock. Waiting tells a test that the code
// under test armed a timer, so that Advance is not lost before it.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []fakeTimer
	armed  chan struct{}
}

type fakeTimer struct {
	at time.Time
	ch chan time.Time
}

func newFakeClock(now time.Time) *fakeClock {
	return &fakeClock{now: now, armed: make(chan struct{}, 16)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	c.timers = append(c.timers, fakeTimer{c.now.Add(d), ch})
	c.armed <- struct{}{}
	return ch
}

// waitArmed waits until the code under test armed a timer.
func (c *fakeClock) waitArmed(t *testing.T) {
	t.Helper()
	select {
	case <-c.armed:
	case <-time.After(10 * time.Second):
		t.Fatal("no timer was armed")
	}
}

// Advance moves the clock and fires the timers due.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	sort.Slice(c.timers, func(i, j int) bool { return c.timers[i].at.Before(c.timers[j].at) })
	for len(c.timers) > 0 && !c.timers[0].at.After(c.now) {
		c.timers[0].ch <- c.now
		c.timers = c.timers[1:]
	}
}

func mustB64(t testing.TB, s string) []byte {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
