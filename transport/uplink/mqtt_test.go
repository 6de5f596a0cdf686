package uplink

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"

	"github.com/cellgate/cellgate/internal/testutil"
	"github.com/cellgate/cellgate/transport"
)

// mosquittoBin finds the broker; the tests need a real one.
func mosquittoBin(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat("/usr/sbin/mosquitto"); err == nil {
		return "/usr/sbin/mosquitto"
	}
	if p, err := exec.LookPath("mosquitto"); err == nil {
		return p
	}
	t.Fatal("mosquitto not found at /usr/sbin/mosquitto or in PATH: run make deps")
	return ""
}

type brokerOpts struct {
	persistence bool     // keep sessions and queued messages across a clean restart
	acl         string   // acl_file contents; empty allows everything
	extra       []string // more mosquitto.conf lines
}

// broker is a real mosquitto with a mutual-TLS listener on 127.0.0.1:
// require_certificate, the certificate CN as user name, no anonymous
// clients. It can be stopped and started again on the same port.
type broker struct {
	t      *testing.T
	bin    string
	conf   string
	port   int
	log    *testutil.SyncBuffer
	cmd    *exec.Cmd
	exited chan struct{}
}

func startBroker(t *testing.T, pki *testPKI, opts brokerOpts) *broker {
	t.Helper()
	b := &broker{t: t, bin: mosquittoBin(t), port: testutil.FreePort(t), log: &testutil.SyncBuffer{}}
	dir := pki.dir
	conf := []string{
		fmt.Sprintf("listener %d 127.0.0.1", b.port),
		"cafile " + pki.caFile,
		"certfile " + pki.serverCertFile,
		"keyfile " + pki.serverKeyFile,
		"require_certificate true",
		"use_identity_as_username true",
		"allow_anonymous false",
		fmt.Sprintf("persistence %t", opts.persistence),
		"persistence_location " + dir + "/",
		"log_dest stderr",
		"log_type all",
	}
	if os.Geteuid() == 0 {
		// As root mosquitto drops to user mosquitto unless told otherwise;
		// the files are readable by it anyway, this just removes a way to fail.
		conf = append(conf, "user root")
	}
	if opts.acl != "" {
		conf = append(conf, "acl_file "+pki.write(t, "acl", []byte(opts.acl)))
	}
	conf = append(conf, opts.extra...)
	b.conf = pki.write(t, "mosquitto.conf", []byte(strings.Join(conf, "\n")+"\n"))
	t.Cleanup(func() {
		b.stop(syscall.SIGKILL)
		if t.Failed() {
			t.Logf("mosquitto log:\n%s", b.log.String())
		}
	})
	b.start()
	return b
}

func (b *broker) start() {
	b.t.Helper()
	cmd := exec.Command(b.bin, "-c", b.conf)
	cmd.Stdout, cmd.Stderr = b.log, b.log
	if err := cmd.Start(); err != nil {
		b.t.Fatalf("start mosquitto: %v", err)
	}
	b.cmd, b.exited = cmd, make(chan struct{})
	go func(exited chan struct{}) {
		cmd.Wait()
		close(exited)
	}(b.exited)
	if err := testutil.WaitListening(b.addr(), 15*time.Second, b.exited); err != nil {
		b.t.Fatalf("mosquitto: %v", err)
	}
}

// stop signals the broker and waits for it to exit (SIGKILL after 10s).
func (b *broker) stop(sig syscall.Signal) {
	if b.cmd == nil {
		return
	}
	b.cmd.Process.Signal(sig)
	select {
	case <-b.exited:
	case <-time.After(10 * time.Second):
		b.cmd.Process.Kill()
		<-b.exited
	}
	b.cmd = nil
}

func (b *broker) addr() string { return fmt.Sprintf("127.0.0.1:%d", b.port) }

func (b *broker) url() *url.URL { return &url.URL{Scheme: "mqtts", Host: b.addr()} }

// subscriber is an independent paho client on its own direct TLS
// connection, with a persistent session and a QoS 1 subscription made
// again on every connection; it records what arrives.
type subscriber struct {
	cm         *autopaho.ConnectionManager
	subscribed chan struct{} // one token per SUBACK

	mu       sync.Mutex
	counts   map[string]int
	props    map[string][2]string // payload → content type, content-encoding
	received int
}

func newSubscriber(t *testing.T, b *broker, pki *testPKI, topic string) *subscriber {
	t.Helper()
	s := &subscriber{subscribed: make(chan struct{}, 16), counts: map[string]int{}, props: map[string][2]string{}}
	ctx, cancel := context.WithCancel(context.Background())
	cfg := autopaho.ClientConfig{
		ServerUrls: []*url.URL{b.url()},
		TlsCfg:     pki.clientTLS(pki.subscriber),
		KeepAlive:  30,
		// mosquitto persists only sessions begun without clean start, so
		// a fresh client ID per test stands in for a clean first session.
		CleanStartOnInitialConnection: false,
		SessionExpiryInterval:         3600,
		ReconnectBackoff:              autopaho.NewConstantBackoff(100 * time.Millisecond),
		ConnectTimeout:                10 * time.Second,
		OnConnectionUp: func(cm *autopaho.ConnectionManager, _ *paho.Connack) {
			go func() {
				sctx, scancel := context.WithTimeout(ctx, 10*time.Second)
				defer scancel()
				if _, err := cm.Subscribe(sctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: topic, QoS: 1}}}); err == nil {
					s.subscribed <- struct{}{}
				}
			}()
		},
		ClientConfig: paho.ClientConfig{
			ClientID: "subscriber-" + strings.ReplaceAll(t.Name(), "/", "-"),
			OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
				p := pr.Packet
				var ct, ce string
				if p.Properties != nil {
					ct, ce = p.Properties.ContentType, p.Properties.User.Get("content-encoding")
				}
				s.mu.Lock()
				s.counts[string(p.Payload)]++
				s.props[string(p.Payload)] = [2]string{ct, ce}
				s.received++
				s.mu.Unlock()
				return true, nil
			}},
		},
	}
	cm, err := autopaho.NewConnection(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	s.cm = cm
	t.Cleanup(func() {
		dctx, dcancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer dcancel()
		cm.Disconnect(dctx)
		cancel()
		<-cm.Done()
	})
	s.awaitSubscribed(t)
	return s
}

func (s *subscriber) awaitSubscribed(t *testing.T) {
	t.Helper()
	select {
	case <-s.subscribed:
	case <-time.After(15 * time.Second):
		t.Fatal("the subscriber did not get its subscription within 15s")
	}
}

// distinct returns how many different payloads arrived, and how many
// arrivals were repeats.
func (s *subscriber) distinct() (n, dups int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.counts), s.received - len(s.counts)
}

func (s *subscriber) has(payload string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[payload] > 0
}

func newTestMQTT(t *testing.T, b *broker, topic string, dial transport.Dialer, mutate func(*MQTTConfig)) (*MQTT, *testutil.SyncBuffer) {
	t.Helper()
	log, buf := testutil.Logger(t)
	cfg := MQTTConfig{
		BrokerURL: b.url(), Topic: topic, QoS: 1, ClientID: "gw-test",
		ConnectTimeout: 10 * time.Second, ReconnectMin: 100 * time.Millisecond, ReconnectMax: time.Second,
	}
	if mutate != nil {
		mutate(&cfg)
	}
	m, err := NewMQTT(context.Background(), cfg, dial, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return m, buf
}

func TestMQTTDeliversEveryMessageWithItsProperties(t *testing.T) {
	pki := newTestPKI(t)
	b := startBroker(t, pki, brokerOpts{})
	const topic = "cellgate/gw-test/telemetry"
	sub := newSubscriber(t, b, pki, topic)
	var dials atomic.Int32
	m, _ := newTestMQTT(t, b, topic, tlsDial(b.addr(), pki.clientTLS(pki.client), &dials), nil)

	const n = 60
	want := map[string][2]string{}
	for i := range n {
		msg := Message{Payload: fmt.Appendf(nil, `{"device_id":"gw-test","readings":[{"id":"r%d","value":%d}]}`, i, i), ContentType: "application/json", IDs: []string{fmt.Sprintf("r%d", i)}}
		if i%3 == 0 {
			// Binary payloads with every byte value must arrive intact.
			msg.Payload = append([]byte{0, 0xff, '\n', 0x80}, msg.Payload...)
			msg.ContentType, msg.ContentEncoding = "application/cbor", "deflate"
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		err := m.Send(ctx, msg)
		cancel()
		if err != nil {
			t.Fatalf("Send %d: %v", i, err)
		}
		want[string(msg.Payload)] = [2]string{msg.ContentType, msg.ContentEncoding}
	}
	testutil.Eventually(t, 20*time.Second, "the subscriber to receive every message", func() bool { n2, _ := sub.distinct(); return n2 == n })
	sub.mu.Lock()
	for p, w := range want {
		if sub.counts[p] == 0 {
			t.Errorf("payload %q never arrived", p)
		} else if got := sub.props[p]; got != w {
			t.Errorf("payload %q arrived with content type/encoding %q, want %q", p, got, w)
		}
	}
	sub.mu.Unlock()
	if d := dials.Load(); d != 1 {
		t.Errorf("the uplink dialled %d times for %d messages on a healthy link, want 1", d, n)
	}
}

// TestMQTTBrokerRestartMidStreamLosesNothing restarts a persistent broker
// (SIGTERM: it saves sessions and queued messages) while messages flow and
// one PUBLISH is in flight (held on the gateway side so that it is surely
// unacknowledged when the broker goes). Every Send must end in nil and the
// subscriber must get every message at least once; duplicates are counted
// and reported, not hidden.
func TestMQTTBrokerRestartMidStreamLosesNothing(t *testing.T) {
	pki := newTestPKI(t)
	b := startBroker(t, pki, brokerOpts{persistence: true})
	const topic = "cellgate/gw-test/telemetry"
	sub := newSubscriber(t, b, pki, topic)
	var dials atomic.Int32
	link := newControlledLink(tlsDial(b.addr(), pki.clientTLS(pki.client), &dials))
	m, logs := newTestMQTT(t, b, topic, link.Dial, nil)

	const n = 150
	var retries atomic.Int32
	sent := make(chan error, 1)
	go func() {
		for i := range n {
			if i == n/3 {
				link.stall() // a third of the way in, the next PUBLISH is held
			}
			msg := Message{Payload: fmt.Appendf(nil, `{"readings":[{"id":"r%03d"}]}`, i), ContentType: "application/json"}
			// The agent's loop: on error, back off and send the same message again.
			for attempt := 0; ; attempt++ {
				if attempt == 50 {
					sent <- fmt.Errorf("message %d still not acknowledged after 50 attempts", i)
					return
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				err := m.Send(ctx, msg)
				cancel()
				if err == nil {
					break
				}
				retries.Add(1)
				time.Sleep(100 * time.Millisecond) // the caller's backoff, not a wait for a condition
			}
		}
		sent <- nil
	}()

	select {
	case <-link.blocked:
	case <-time.After(10 * time.Second):
		t.Fatal("no PUBLISH reached the stalled link")
	}
	// The held write stays held until its conn closes; new conns flow.
	link.mu.Lock()
	link.stalled = nil
	link.mu.Unlock()
	b.stop(syscall.SIGTERM)
	b.start()

	select {
	case err := <-sent:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the sends did not finish within 60s of the restart")
	}
	testutil.Eventually(t, 30*time.Second, "every message at the subscriber", func() bool { d, _ := sub.distinct(); return d == n })
	got, dups := sub.distinct()
	t.Logf("broker restart: %d messages, %d distinct received, %d duplicates, %d Send retries, %d dials", n, got, dups, retries.Load(), dials.Load())
	if dials.Load() < 2 {
		t.Errorf("the uplink dialled %d times; the restart should have forced a reconnect", dials.Load())
	}
	if !strings.Contains(logs.String(), "session_present=true") {
		t.Error("the uplink never resumed its session: the in-flight message was not resent from the session")
	}
}

// controlledLink is the test's hand on the link between uplink and broker:
// while the gate is shut, dials wait (the modem has no network); a
// stalled conn holds its writes (the bytes never leave the gateway).
type controlledLink struct {
	dial transport.Dialer

	mu      sync.Mutex
	gate    chan struct{} // closed while dials may proceed
	stalled chan struct{} // closed to release stalled writes; nil when not stalling
	blocked chan struct{} // receives a token when a write starts waiting
}

func newControlledLink(dial transport.Dialer) *controlledLink {
	l := &controlledLink{dial: dial, gate: make(chan struct{}), blocked: make(chan struct{}, 16)}
	close(l.gate)
	return l
}

func (l *controlledLink) shut() { l.mu.Lock(); l.gate = make(chan struct{}); l.mu.Unlock() }
func (l *controlledLink) open() { l.mu.Lock(); close(l.gate); l.mu.Unlock() }
func (l *controlledLink) stall() {
	l.mu.Lock()
	l.stalled = make(chan struct{})
	l.mu.Unlock()
}

func (l *controlledLink) Dial(ctx context.Context) (net.Conn, error) {
	l.mu.Lock()
	gate := l.gate
	l.mu.Unlock()
	select {
	case <-gate:
	case <-ctx.Done():
		return nil, fmt.Errorf("no network (test gate shut): %w", ctx.Err())
	}
	c, err := l.dial(ctx)
	if err != nil {
		return nil, err
	}
	return &stallConn{Conn: c, link: l, closed: make(chan struct{})}, nil
}

type stallConn struct {
	net.Conn
	link      *controlledLink
	closeOnce sync.Once
	closed    chan struct{}
}

func (c *stallConn) Write(p []byte) (int, error) {
	c.link.mu.Lock()
	stalled := c.link.stalled
	c.link.mu.Unlock()
	if stalled != nil {
		c.link.blocked <- struct{}{}
		select {
		case <-stalled:
		case <-c.closed:
			return 0, net.ErrClosed
		}
	}
	return c.Conn.Write(p)
}

func (c *stallConn) Close() error {
	c.closeOnce.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

// TestMQTTRepublishesWhenTheBrokerLostTheSession kills a broker without
// persistence while a PUBLISH is in flight (held on the gateway side, so
// the broker never saw it). The broker comes back without the session,
// paho discards the in-flight message without telling its Publish, and
// Send must publish it again rather than wait for an acknowledgement that
// cannot come.
func TestMQTTRepublishesWhenTheBrokerLostTheSession(t *testing.T) {
	pki := newTestPKI(t)
	b := startBroker(t, pki, brokerOpts{})
	const topic = "cellgate/gw-test/telemetry"
	sub := newSubscriber(t, b, pki, topic)
	link := newControlledLink(tlsDial(b.addr(), pki.clientTLS(pki.client), nil))
	m, logs := newTestMQTT(t, b, topic, link.Dial, func(c *MQTTConfig) { c.AckTimeout = 10 * time.Minute })

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := m.Send(ctx, Message{Payload: []byte("m1")}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "m1 at the subscriber", func() bool { return sub.has("m1") })

	link.stall()
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		done <- m.Send(ctx, Message{Payload: []byte("m2")})
	}()
	select {
	case <-link.blocked:
	case <-time.After(10 * time.Second):
		t.Fatal("the PUBLISH of m2 never reached the link")
	}
	link.shut()
	b.stop(syscall.SIGKILL)
	b.start()
	sub.awaitSubscribed(t) // the new broker knows the subscriber again before m2 can arrive
	link.mu.Lock()
	link.stalled = nil
	link.mu.Unlock()
	link.open()

	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Send(m2) after the broker lost the session: %v", err)
		}
	case <-time.After(40 * time.Second):
		t.Fatal("Send(m2) did not return")
	}
	testutil.Eventually(t, 10*time.Second, "m2 at the subscriber", func() bool { return sub.has("m2") })
	if !strings.Contains(logs.String(), "publishing the message again") {
		t.Error("Send succeeded without the republish path; the test did not exercise what it claims")
	}
}

// ackHoldLink hands paho connections whose PUBACKs from the broker arrive
// hold late, while every other packet (CONNACK, PINGRESP) passes at once: a
// broker slow to acknowledge on a link that is alive. A reader goroutine
// per connection parses the broker's packets and passes them on.
type ackHoldLink struct {
	dial transport.Dialer
	hold time.Duration
	// deadFirst makes the first connection go dead after its CONNACK:
	// nothing from the broker reaches paho any more, PINGRESPs included.
	deadFirst bool
	conns     atomic.Int32

	pubacks, pingresps atomic.Int32
	pingsWhileHeld     atomic.Int32 // PINGRESPs passed while a PUBACK was held
	held               atomic.Int32 // PUBACKs being held now
	maxHeld            atomic.Int32 // the most PUBACKs held at once
}

func (l *ackHoldLink) Dial(ctx context.Context) (net.Conn, error) {
	c, err := l.dial(ctx)
	if err != nil {
		return nil, err
	}
	r, w := io.Pipe()
	hc := &heldConn{Conn: c, r: r}
	dead := l.deadFirst && l.conns.Add(1) == 1
	go func() {
		for {
			p, err := packets.ReadPacket(c)
			if err != nil {
				w.CloseWithError(err)
				return
			}
			if dead && p.Type != packets.CONNACK {
				continue
			}
			switch p.Type {
			case packets.PUBACK:
				l.pubacks.Add(1)
				for n := l.held.Add(1); ; {
					m := l.maxHeld.Load()
					if n <= m || l.maxHeld.CompareAndSwap(m, n) {
						break
					}
				}
				time.AfterFunc(l.hold, func() {
					l.held.Add(-1)
					hc.pass(w, p)
				})
				continue
			case packets.PINGRESP:
				l.pingresps.Add(1)
				if l.held.Load() > 0 {
					l.pingsWhileHeld.Add(1)
				}
			}
			hc.pass(w, p)
		}
	}()
	return hc, nil
}

// heldConn is a connection whose reads come from ackHoldLink's reader.
type heldConn struct {
	net.Conn
	r  *io.PipeReader
	mu sync.Mutex // one packet at a time into the pipe
}

func (c *heldConn) Read(p []byte) (int, error) { return c.r.Read(p) }

func (c *heldConn) pass(w *io.PipeWriter, p *packets.ControlPacket) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p.WriteTo(w) // fails only once the connection is gone
}

func (c *heldConn) Close() error {
	c.r.Close()
	return c.Conn.Close()
}

// A PUBACK slower than AckTimeout on a connection that answers its
// keep-alive is waited for: Send returns on it, and the message is
// published once. (Before, paho gave up on the PUBACK after AckTimeout,
// Send failed, and the agent published the batch again on the same live
// link.) The caller here is the agent's loop: on an error it sends again.
func TestMQTTSlowPubackOnALiveLinkIsWaitedFor(t *testing.T) {
	pki := newTestPKI(t)
	b := startBroker(t, pki, brokerOpts{})
	const topic = "cellgate/gw-test/telemetry"
	sub := newSubscriber(t, b, pki, topic)
	var dials atomic.Int32
	const hold = 4 * time.Second
	link := &ackHoldLink{dial: tlsDial(b.addr(), pki.clientTLS(pki.client), &dials), hold: hold}
	m, logs := newTestMQTT(t, b, topic, link.Dial, func(c *MQTTConfig) {
		c.KeepAlive = time.Second
		c.AckTimeout = 500 * time.Millisecond
	})

	start := time.Now()
	sends := 0
	for {
		sends++
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := m.Send(ctx, Message{Payload: []byte("slow-ack")})
		cancel()
		if err == nil {
			break
		}
		if sends == 5 {
			t.Fatalf("Send still failing after %d attempts: %v", sends, err)
		}
	}
	took := time.Since(start)
	// The subscriber gets what the broker forwards at once; give a second
	// copy, had there been one, time to arrive too.
	testutil.Eventually(t, 10*time.Second, "the message at the subscriber", func() bool { return sub.has("slow-ack") })
	time.Sleep(time.Second) // room for a duplicate to show up, not a wait for a condition
	n, dups := sub.distinct()
	t.Logf("PUBACK held %v (AckTimeout %v, keep-alive %v): Send returned after %v, %d Send call(s), %d PUBACK(s), %d PINGRESPs while it was held, %d dial(s), %d duplicate(s) at the subscriber",
		hold, 500*time.Millisecond, time.Second, took.Round(time.Millisecond), sends, link.pubacks.Load(), link.pingsWhileHeld.Load(), dials.Load(), dups)
	if sends != 1 || n != 1 || dups != 0 || link.pubacks.Load() != 1 {
		t.Errorf("the message was published again: %d Send calls, %d PUBACKs, %d duplicates at the subscriber", sends, link.pubacks.Load(), dups)
	}
	if took < hold {
		t.Errorf("Send returned after %v, before the PUBACK (held %v) came", took, hold)
	}
	if link.pingsWhileHeld.Load() < 2 || dials.Load() != 1 {
		t.Errorf("%d PINGRESPs while the PUBACK was held, %d dials: the link was not shown alive throughout", link.pingsWhileHeld.Load(), dials.Load())
	}
	if !strings.Contains(logs.String(), "no acknowledgement yet") {
		t.Error("the slow acknowledgement was not logged")
	}
}

// A link that dies with a PUBLISH in flight is found by the keep-alive:
// paho drops the connection when its PINGRESP does not come, reconnects,
// and sends the message again from the session (DUP); the same Send
// returns on that PUBACK. The agent never publishes it a second time.
func TestMQTTDeadLinkIsFoundByTheKeepAlive(t *testing.T) {
	pki := newTestPKI(t)
	b := startBroker(t, pki, brokerOpts{})
	const topic = "cellgate/gw-test/telemetry"
	sub := newSubscriber(t, b, pki, topic)
	var dials atomic.Int32
	link := &ackHoldLink{dial: tlsDial(b.addr(), pki.clientTLS(pki.client), &dials), deadFirst: true}
	m, logs := newTestMQTT(t, b, topic, link.Dial, func(c *MQTTConfig) {
		c.KeepAlive = time.Second
		c.AckTimeout = 500 * time.Millisecond
	})

	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := m.Send(ctx, Message{Payload: []byte("dead-link")}); err != nil {
		t.Fatalf("Send over a link that died: %v", err)
	}
	took := time.Since(start)
	testutil.Eventually(t, 10*time.Second, "the message at the subscriber", func() bool { return sub.has("dead-link") })
	_, dups := sub.distinct()
	t.Logf("link dead after CONNACK (keep-alive 1s): Send returned after %v over %d dials; %d duplicate(s) at the subscriber (the session's DUP resend)", took.Round(time.Millisecond), dials.Load(), dups)
	if dials.Load() != 2 {
		t.Errorf("%d dials, want 2: the dead connection dropped and one reconnect", dials.Load())
	}
	if !strings.Contains(logs.String(), "session_present=true") {
		t.Error("the uplink did not resume its session: the message was not resent from it")
	}
}

func TestMQTTBrokerRefusingTheClientCertificateFailsSend(t *testing.T) {
	pki := newTestPKI(t)
	b := startBroker(t, pki, brokerOpts{})
	m, _ := newTestMQTT(t, b, "cellgate/gw-test/telemetry", tlsDial(b.addr(), pki.clientTLS(pki.rogue), nil), nil)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	err := m.Send(ctx, Message{Payload: []byte("never")})
	if err == nil {
		t.Fatal("Send succeeded with a client certificate the broker does not trust")
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Send error does not say the wait ran out: %v", err)
	}
	// The error must say why, not just that time ran out.
	if !strings.Contains(err.Error(), "not connected") || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("Send error does not name the refused certificate: %v", err)
	}
	t.Logf("error seen by the agent: %v", err)
}

func TestMQTTPubackRefusalIsAnError(t *testing.T) {
	pki := newTestPKI(t)
	b := startBroker(t, pki, brokerOpts{acl: "user gw-test\ntopic write cellgate/gw-test/#\n"})
	m, _ := newTestMQTT(t, b, "cellgate/someone-else/telemetry", tlsDial(b.addr(), pki.clientTLS(pki.client), nil), nil)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := m.Send(ctx, Message{Payload: []byte("x")})
	var pe *PublishError
	if !errors.As(err, &pe) || pe.ReasonCode != 0x87 {
		t.Fatalf("Send to a topic the ACL denies = %v, want a *PublishError with reason 0x87", err)
	}
	var perm *PermanentError
	if errors.As(err, &perm) {
		t.Errorf("an authorisation refusal is a configuration problem, not this message's: it must stay retryable, got %v", err)
	}
}

func TestMQTTCloseEndsAWaitingSend(t *testing.T) {
	pki := newTestPKI(t)
	b := startBroker(t, pki, brokerOpts{})
	link := newControlledLink(tlsDial(b.addr(), pki.clientTLS(pki.client), nil))
	link.shut() // no network: the uplink can never connect
	m, _ := newTestMQTT(t, b, "cellgate/gw-test/telemetry", link.Dial, nil)

	done := make(chan error, 1)
	go func() { done <- m.Send(context.Background(), Message{Payload: []byte("x")}) }()
	closeEndsSends(t, m, done)
}

func TestNewMQTTRefusesBadConfig(t *testing.T) {
	u := &url.URL{Scheme: "mqtts", Host: "broker:8883"}
	dial := func(context.Context) (net.Conn, error) { return nil, errors.New("unused") }
	for name, c := range map[string]MQTTConfig{
		"no broker":          {Topic: "t", QoS: 1, ClientID: "c"},
		"wildcard topic":     {BrokerURL: u, Topic: "a/+/b", QoS: 1, ClientID: "c"},
		"no topic":           {BrokerURL: u, QoS: 1, ClientID: "c"},
		"QoS 3":              {BrokerURL: u, Topic: "t", QoS: 3, ClientID: "c"},
		"no client ID":       {BrokerURL: u, Topic: "t", QoS: 1},
		"keep-alive too big": {BrokerURL: u, Topic: "t", QoS: 1, ClientID: "c", KeepAlive: 70000 * time.Second},
		"backoff inverted":   {BrokerURL: u, Topic: "t", QoS: 1, ClientID: "c", ReconnectMin: time.Minute, ReconnectMax: time.Second},
	} {
		t.Run(name, func(t *testing.T) {
			m, err := NewMQTT(context.Background(), c, dial, nil)
			if err == nil {
				m.Close()
				t.Fatal("accepted")
			}
			if !strings.HasPrefix(err.Error(), "mqtt uplink: ") {
				t.Errorf("error does not say where: %v", err)
			}
		})
	}
}

// The password in the broker URL goes into CONNECT, never into logs.
func TestMQTTKeepsTheBrokerPasswordOutOfLogs(t *testing.T) {
	u := &url.URL{Scheme: "mqtts", Host: "127.0.0.1:1", User: url.UserPassword("gw", "s3cret-pw")}
	log, buf := testutil.Logger(t)
	failing := func(context.Context) (net.Conn, error) { return nil, errors.New("network unreachable") }
	m, err := NewMQTT(context.Background(), MQTTConfig{BrokerURL: u, Topic: "t", QoS: 1, ClientID: "c", ReconnectMin: 10 * time.Millisecond, ReconnectMax: 20 * time.Millisecond}, failing, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err = m.Send(ctx, Message{Payload: []byte("x")})
	m.Close()
	if err == nil || !strings.Contains(err.Error(), "network unreachable") {
		t.Fatalf("Send = %v, want the dial failure named", err)
	}
	if strings.Contains(buf.String()+err.Error(), "s3cret-pw") {
		t.Fatalf("the broker password leaked:\nerr: %v\nlog:\n%s", err, buf.String())
	}
}

// The first attempt, and the first after a connection that stayed up for
// mqttStableAfter, are immediate; later waits double from ReconnectMin to
// ReconnectMax, each shortened by up to half for jitter.
func TestMQTTReconnectBackoff(t *testing.T) {
	const lo, hi = 100 * time.Millisecond, time.Second
	m := &MQTT{cfg: MQTTConfig{ReconnectMin: lo, ReconnectMax: hi}}
	within := func(attempt int, base time.Duration) {
		t.Helper()
		for range 50 {
			if d := m.backoff(attempt); d < base/2 || d > base {
				t.Fatalf("attempt %d waits %s, want within [%s, %s]", attempt, d, base/2, base)
			}
		}
	}
	if d := m.backoff(0); d != 0 {
		t.Fatalf("very first attempt waits %s, want 0", d)
	}
	for attempt, base := range map[int]time.Duration{1: lo, 2: 2 * lo, 3: 4 * lo, 4: 8 * lo, 5: hi, 40: hi} {
		within(attempt, base)
	}
	m.upSince = time.Now()
	within(0, lo) // a connection that dropped at once does not earn an immediate retry
	m.upSince = time.Now().Add(-mqttStableAfter)
	if d := m.backoff(0); d != 0 {
		t.Fatalf("attempt after a stable connection waits %s, want 0", d)
	}
}
