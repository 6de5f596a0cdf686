package uplink

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cellgate/cellgate/internal/testutil"
)

// readingLines builds a tls_lines message: one JSON reading per line.
func readingLines(ids ...string) Message {
	var b strings.Builder
	for i, id := range ids {
		fmt.Fprintf(&b, `{"id":%q,"sensor":"t1","value":%d.5,"unit":"C"}`+"\n", id, i)
	}
	return Message{Payload: []byte(b.String()), ContentType: "application/x-ndjson", IDs: ids}
}

// TestTLSLinesAtMostOnceReachesOpensslServer sends to a real
// `openssl s_server` that verifies the client certificate and prints what
// it receives: every byte of every message must be there, in order.
func TestTLSLinesAtMostOnceReachesOpensslServer(t *testing.T) {
	pki := newTestPKI(t)
	port := testutil.FreePort(t)
	cmd := exec.Command("/usr/bin/openssl", "s_server", "-accept", fmt.Sprintf("127.0.0.1:%d", port),
		"-cert", pki.serverCertFile, "-key", pki.serverKeyFile, "-CAfile", pki.caFile,
		"-Verify", "1", "-verify_return_error", "-quiet", "-naccept", "1")
	out, errOut := &testutil.SyncBuffer{}, &testutil.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = out, errOut
	// s_server ends the connection when its stdin ends: hold it open.
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start openssl s_server: %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		stdin.Close()
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("s_server stderr:\n%s", errOut.String())
		}
	})
	if err := testutil.WaitListening(fmt.Sprintf("127.0.0.1:%d", port), 15*time.Second, exited); err != nil {
		t.Fatalf("openssl s_server: %v", err)
	}

	var dials atomic.Int32
	log, _ := testutil.Logger(t)
	u := NewTLSLines(TLSLinesConfig{Addr: fmt.Sprintf("127.0.0.1:%d", port)}, tlsDial(fmt.Sprintf("127.0.0.1:%d", port), pki.clientTLS(pki.client), &dials), log)
	var want strings.Builder
	for i := range 3 {
		msg := readingLines(fmt.Sprintf("m%d-a", i), fmt.Sprintf("m%d-b", i))
		if i == 2 {
			// A payload without its final newline gets one.
			msg.Payload = msg.Payload[:len(msg.Payload)-1]
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := u.Send(ctx, msg)
		cancel()
		if err != nil {
			t.Fatalf("Send %d: %v", i, err)
		}
		want.Write(msg.Payload)
		if i == 2 {
			want.WriteByte('\n')
		}
	}
	u.Close()
	// -naccept 1: the server exits once our connection is gone, with
	// everything it received printed.
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Fatal("openssl s_server did not see the connection close")
	}
	if got := out.String(); got != want.String() {
		t.Fatalf("s_server received:\n%q\nwant:\n%q", got, want.String())
	}
	checkDials(t, &dials, 1, "3 messages share the connection")
}

// lineServer is a Go TLS peer requiring client certificates; handle runs
// per connection, n counting connections from 1.
type lineServer struct {
	addr     string
	accepted atomic.Int32
	received chan string // every line read by the handlers

	mu    sync.Mutex
	conns []net.Conn
}

func startLineServer(t *testing.T, pki *testPKI, handle func(n int, c net.Conn, s *lineServer)) *lineServer {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", pki.serverTLS())
	if err != nil {
		t.Fatal(err)
	}
	s := &lineServer{addr: ln.Addr().String(), received: make(chan string, 1024)}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n := int(s.accepted.Add(1))
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				handle(n, c, s)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		for _, c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		wg.Wait()
	})
	return s
}

// ackLines reads lines and acks each reading whose id passes ack.
func ackLines(c net.Conn, s *lineServer, ack func(id string) bool, noise bool) {
	sc := bufio.NewScanner(c)
	for sc.Scan() {
		s.received <- sc.Text()
		var r struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			fmt.Fprintf(c, "error not json\n")
			continue
		}
		if noise {
			fmt.Fprintf(c, "hello there\r\n") // not an ack: to be ignored
		}
		if ack(r.ID) {
			fmt.Fprintf(c, "ack %s\r\n", r.ID)
		}
	}
}

// newAckedLines starts a lineServer that runs handle for each connection,
// and an acking TLSLines uplink to it whose dials are counted. The uplink is
// closed when the test ends.
func newAckedLines(t *testing.T, handle func(n int, c net.Conn, s *lineServer)) (*TLSLines, *lineServer, *atomic.Int32) {
	t.Helper()
	pki := newTestPKI(t)
	s := startLineServer(t, pki, handle)
	dials := new(atomic.Int32)
	log, _ := testutil.Logger(t)
	u := NewTLSLines(TLSLinesConfig{Addr: s.addr, Ack: true}, tlsDial(s.addr, pki.clientTLS(pki.client), dials), log)
	t.Cleanup(func() { u.Close() })
	return u, s, dials
}

// checkDials reports an error unless the uplink dialled want times; why
// says what the count shows.
func checkDials(t *testing.T, dials *atomic.Int32, want int32, why string) {
	t.Helper()
	if d := dials.Load(); d != want {
		t.Errorf("dialled %d times, want %d: %s", d, want, why)
	}
}

func TestTLSLinesReturnsOnceEveryIDIsAcked(t *testing.T) {
	u, s, dials := newAckedLines(t, func(_ int, c net.Conn, s *lineServer) {
		ackLines(c, s, func(string) bool { return true }, true)
	})
	var sent []string
	for i := range 3 {
		msg := readingLines(fmt.Sprintf("r%d-1", i), fmt.Sprintf("r%d-2", i), fmt.Sprintf("r%d-3", i))
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := u.Send(ctx, msg)
		cancel()
		if err != nil {
			t.Fatalf("Send %d: %v", i, err)
		}
		sent = append(sent, strings.Split(strings.TrimSuffix(string(msg.Payload), "\n"), "\n")...)
	}
	for i, want := range sent {
		select {
		case got := <-s.received:
			if got != want {
				t.Fatalf("line %d arrived as %q, want %q", i, got, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("line %d never arrived", i)
		}
	}
	checkDials(t, dials, 1, "3 messages share the connection")
}

func TestTLSLinesFailsByContextWhenSomeIDsAreNotAcked(t *testing.T) {
	u, _, dials := newAckedLines(t, func(_ int, c net.Conn, s *lineServer) {
		ackLines(c, s, func(id string) bool { return !strings.HasPrefix(id, "skip-") }, false)
	})

	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	err := u.Send(ctx, readingLines("a1", "skip-2", "a3"))
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "1 of 3 readings unacked (missing skip-2)") {
		t.Fatalf("Send with an unacked reading = %v, want a deadline error naming skip-2", err)
	}
	// The connection is still good, and the acks of the failed message do
	// not count for the next one.
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := u.Send(ctx, readingLines("b1", "b2")); err != nil {
		t.Fatalf("Send after a partly acked message: %v", err)
	}
	checkDials(t, dials, 1, "a missing ack is no reason to drop the connection")
}

func TestTLSLinesPeerClosingMidMessageFailsSendThenRedials(t *testing.T) {
	u, _, dials := newAckedLines(t, func(n int, c net.Conn, s *lineServer) {
		if n == 1 {
			// Take one line, ack it, and hang up on the rest.
			line, _ := bufio.NewReader(c).ReadString('\n')
			s.received <- strings.TrimSpace(line)
			fmt.Fprintf(c, "ack c1\n")
			return
		}
		ackLines(c, s, func(string) bool { return true }, false)
	})

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := u.Send(ctx, readingLines("c1", "c2", "c3"))
	if err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Send to a peer that hung up = %v, want a connection error before the deadline", err)
	}
	if !strings.Contains(err.Error(), "2 of 3 readings unacked") {
		t.Errorf("error does not say what is unacked: %v", err)
	}
	if err := u.Send(ctx, readingLines("c1", "c2", "c3")); err != nil {
		t.Fatalf("retry on a fresh connection: %v", err)
	}
	checkDials(t, dials, 2, "the retry needs a fresh connection")
}

// A peer that closes an idle connection costs at most one failed Send:
// the one after it dials again.
func TestTLSLinesRecoversFromAnIdleClose(t *testing.T) {
	u, _, dials := newAckedLines(t, func(n int, c net.Conn, s *lineServer) {
		sc := bufio.NewScanner(c)
		if n == 1 && sc.Scan() {
			s.received <- sc.Text()
			fmt.Fprintf(c, "ack i1\n")
			return // then hang up while the uplink is idle
		}
		ackLines(c, s, func(string) bool { return true }, false)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := u.Send(ctx, readingLines("i1")); err != nil {
		t.Fatal(err)
	}
	var err error
	for attempt := 0; attempt < 2; attempt++ {
		if err = u.Send(ctx, readingLines("i2")); err == nil {
			break
		}
		t.Logf("attempt %d after the idle close: %v", attempt, err)
	}
	if err != nil {
		t.Fatalf("two Sends after an idle close both failed: %v", err)
	}
	checkDials(t, dials, 2, "the idle close costs one connection")
}

func TestTLSLinesRefusesMalformedMessagesWithoutDialling(t *testing.T) {
	var dials atomic.Int32
	dial := func(context.Context) (net.Conn, error) { dials.Add(1); return nil, errors.New("must not dial") }
	u := NewTLSLines(TLSLinesConfig{Addr: "peer:1", Ack: true}, dial, nil)
	defer u.Close()
	for name, msg := range map[string]Message{
		"empty":            {},
		"more lines":       {Payload: []byte("{}\n{}\n"), IDs: []string{"a"}},
		"more ids":         {Payload: []byte("{}\n"), IDs: []string{"a", "b"}},
		"id with a space":  {Payload: []byte("{}\n"), IDs: []string{"a b"}},
		"empty id":         {Payload: []byte("{}\n"), IDs: []string{""}},
		"newline in a key": {Payload: []byte("{\n}\n"), IDs: []string{"a"}},
	} {
		t.Run(name, func(t *testing.T) {
			err := u.Send(context.Background(), msg)
			var perm *PermanentError
			if !errors.As(err, &perm) {
				t.Fatalf("Send = %v, want a *PermanentError", err)
			}
		})
	}
	if dials.Load() != 0 {
		t.Fatal("a malformed message made the uplink dial")
	}
}

func TestTLSLinesCloseEndsAWaitingSend(t *testing.T) {
	u, s, _ := newAckedLines(t, func(_ int, c net.Conn, s *lineServer) {
		ackLines(c, s, func(string) bool { return false }, false) // reads, never acks
	})
	done := make(chan error, 1)
	go func() { done <- u.Send(context.Background(), readingLines("z1")) }()
	select {
	case <-s.received: // the line is out: the Send waits for its ack
	case <-time.After(10 * time.Second):
		t.Fatal("the line never arrived")
	}
	closeEndsSends(t, u, done)
}

// A Close that lands while Send is writing (the peer reads nothing, so the
// write cannot finish) must end that Send with an error wrapping
// ErrClosed, as for a Send waiting for its acks, not with the raw "use of
// closed network connection" of the cut write.
func TestTLSLinesCloseDuringAWriteEndsTheSendWithErrClosed(t *testing.T) {
	pki := newTestPKI(t)
	writing := make(chan struct{})
	release := make(chan struct{})
	s := startLineServer(t, pki, func(_ int, c net.Conn, _ *lineServer) {
		// One byte proves the write has begun; then read no more.
		if _, err := c.Read(make([]byte, 1)); err == nil {
			close(writing)
		}
		<-release
	})
	t.Cleanup(func() { close(release) }) // runs before the server's cleanup
	log, _ := testutil.Logger(t)
	u := NewTLSLines(TLSLinesConfig{Addr: s.addr}, tlsDial(s.addr, pki.clientTLS(pki.client), nil), log)
	t.Cleanup(func() { u.Close() })
	// Far more than the socket buffers on both sides hold: the write is
	// still going on when Close comes.
	big := Message{Payload: append(bytes.Repeat([]byte("x"), 64<<20), '\n'), IDs: []string{"big"}}
	done := make(chan error, 1)
	go func() { done <- u.Send(context.Background(), big) }()
	select {
	case <-writing:
	case <-time.After(10 * time.Second):
		t.Fatal("the write never began")
	}
	closeEndsSends(t, u, done)
}

// A peer that took the lines but never acks (a link that died silently, as
// cellular links do) must not hold the forwarder, whose ctx has no deadline,
// forever: AckTimeout fails the Send and the next one dials afresh.
func TestTLSLinesAckTimeoutDropsTheConnection(t *testing.T) {
	pki := newTestPKI(t)
	s := startLineServer(t, pki, func(n int, c net.Conn, s *lineServer) {
		ackLines(c, s, func(string) bool { return n > 1 }, false) // the first connection never acks
	})
	var dials atomic.Int32
	log, _ := testutil.Logger(t)
	u := NewTLSLines(TLSLinesConfig{Addr: s.addr, Ack: true, AckTimeout: 300 * time.Millisecond},
		tlsDial(s.addr, pki.clientTLS(pki.client), &dials), log)
	t.Cleanup(func() { u.Close() })

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := u.Send(ctx, readingLines("a1", "a2"))
	if err == nil || ctx.Err() != nil || !strings.Contains(err.Error(), "2 of 2 readings unacked") {
		t.Fatalf("Send to a peer that never acks = %v (ctx: %v), want an ack-timeout error before ctx ends", err, ctx.Err())
	}
	if err := u.Send(ctx, readingLines("a1", "a2")); err != nil {
		t.Fatalf("Send after an ack timeout: %v", err)
	}
	checkDials(t, &dials, 2, "an ack timeout drops the connection")
}
