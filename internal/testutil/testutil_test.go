package testutil

import (
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestWaitListeningSeesAListenerWithoutConnecting(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var accepted atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()
	if err := WaitListening(ln.Addr().String(), 5*time.Second, nil); err != nil {
		t.Fatal(err)
	}
	if n := accepted.Load(); n != 0 {
		t.Fatalf("WaitListening connected %d times; it must only look", n)
	}
}

func TestWaitListeningGivesUp(t *testing.T) {
	addr := fmt.Sprintf("127.0.0.1:%d", FreePort(t))
	if err := WaitListening(addr, 50*time.Millisecond, nil); err == nil || !strings.Contains(err.Error(), "nothing listens") {
		t.Errorf("nobody listening: %v, want a timeout", err)
	}
	exited := make(chan struct{})
	close(exited)
	if err := WaitListening(addr, time.Minute, exited); err == nil || !strings.Contains(err.Error(), "exited") {
		t.Errorf("process gone: %v, want an early end", err)
	}
}

// fatalRecorder stands in for t to see what Eventually reports.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (f *fatalRecorder) Helper() {}

func (f *fatalRecorder) Fatalf(format string, args ...any) { f.msg = fmt.Sprintf(format, args...) }

func TestEventually(t *testing.T) {
	var calls int
	Eventually(t, 5*time.Second, "the third call", func() bool { calls++; return calls == 3 })
	if calls != 3 {
		t.Errorf("cond called %d times, want 3", calls)
	}
	f := &fatalRecorder{TB: t}
	Eventually(f, 20*time.Millisecond, "a condition that never holds", func() bool { return false })
	if !strings.Contains(f.msg, "a condition that never holds") {
		t.Errorf("Eventually reported %q, want what it waited for", f.msg)
	}
}

func TestWaitFor(t *testing.T) {
	var calls int
	if !WaitFor(5*time.Second, func() bool { calls++; return calls == 3 }) || calls != 3 {
		t.Errorf("WaitFor: cond called %d times, want true after 3", calls)
	}
	start := time.Now()
	if WaitFor(20*time.Millisecond, func() bool { return false }) {
		t.Error("WaitFor reported a condition that never holds")
	}
	if d := time.Since(start); d < 20*time.Millisecond {
		t.Errorf("WaitFor gave up after %s, before its 20ms", d)
	}
}

func TestSyncBufferTakesConcurrentWriters(t *testing.T) {
	var b SyncBuffer
	done := make(chan struct{})
	for range 4 {
		go func() {
			for range 100 {
				b.Write([]byte("x"))
			}
			done <- struct{}{}
		}()
	}
	for range 4 {
		<-done
	}
	if n := len(b.String()); n != 400 {
		t.Fatalf("len = %d, want 400", n)
	}
	b.Reset()
	if b.String() != "" {
		t.Fatal("Reset kept the contents")
	}
}
