//go:build linux

package atkit_test

import (
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/cellgate/cellgate/internal/testutil"
	"github.com/cellgate/cellgate/sdk/atkit"
)

// TestSecondOpenOfAPortIsRefusedNamingTheHolder: two drivers on one modem
// steal each other's answers, so the second OpenPort waits for the lock and
// then fails, naming the process that holds it: this test binary.
func TestSecondOpenOfAPortIsRefusedNamingTheHolder(t *testing.T) {
	line := openPTY(t)
	ctx := testCtx(t)
	first, err := atkit.OpenPort(ctx, line.Path, atkit.PortConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()

	_, err = atkit.OpenPort(ctx, line.Path, atkit.PortConfig{LockWait: 300 * time.Millisecond})
	var busy *atkit.PortBusyError
	if !errors.As(err, &busy) {
		t.Fatalf("second OpenPort = %v (%T), want a *PortBusyError", err, err)
	}
	if busy.Port != line.Path || busy.HolderPID != os.Getpid() || busy.Err != nil {
		t.Fatalf("PortBusyError %+v: want port %s, holder pid %d, ended by LockWait", busy, line.Path, os.Getpid())
	}
	if !strings.Contains(err.Error(), "held by another process (pid ") || !strings.Contains(err.Error(), busy.Holder) || busy.Holder == "" {
		t.Fatalf("error %q should name the holder's pid and command", err)
	}

	short, cancel := context.WithCancel(ctx)
	cancel()
	_, err = atkit.OpenPort(short, line.Path, atkit.PortConfig{})
	if !errors.As(err, &busy) || !errors.Is(err, context.Canceled) {
		t.Fatalf("OpenPort with a canceled context while the port is held = %v, want a PortBusyError wrapping context.Canceled", err)
	}
}

// TestOpenPortWaitsForTheHolderToLetGo: a plugin that replaces a dying one
// gets the port as soon as the old one closes it.
func TestOpenPortWaitsForTheHolderToLetGo(t *testing.T) {
	line := openPTY(t)
	ctx := testCtx(t)
	first, err := atkit.OpenPort(ctx, line.Path, atkit.PortConfig{})
	if err != nil {
		t.Fatal(err)
	}
	waiting := make(chan struct{})
	opened := make(chan error, 1)
	go func() {
		p, err := atkit.OpenPort(&waitSignal{Context: ctx, waiting: waiting}, line.Path, atkit.PortConfig{})
		if err == nil {
			err = p.Close()
		}
		opened <- err
	}()
	select {
	case <-waiting:
	case err := <-opened:
		t.Fatalf("second OpenPort returned (%v) while the first holds the port", err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-opened; err != nil {
		t.Fatalf("OpenPort once the holder closed: %v", err)
	}
}

// TestOpenPortDiscardsStaleInput: what the modem sent to a previous owner of
// the port answers commands the new one never sent.
func TestOpenPortDiscardsStaleInput(t *testing.T) {
	line := openPTY(t)
	stale := "\r\n+CCHOPEN: 0,0\r\n\r\nOK\r\n"
	if _, err := line.Modem.WriteString(stale); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "the stale answer queued on the line", func() bool { return line.queued(t) == len(stale) })
	p, err := atkit.OpenPort(testCtx(t), line.Path, atkit.PortConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, err := line.Modem.WriteString("fresh\r\n"); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len("fresh\r\n"))
	if _, err := io.ReadFull(p, got); err != nil || string(got) != "fresh\r\n" {
		t.Fatalf("first bytes read after OpenPort = %q, %v; want only what the modem sent since", got, err)
	}
}

// TestCloseEndsAPendingRead: the AT channel's reader blocks in Read; Close
// must end it with io.EOF so the reader exits cleanly.
func TestCloseEndsAPendingRead(t *testing.T) {
	line := openPTY(t)
	p, err := atkit.OpenPort(testCtx(t), line.Path, atkit.PortConfig{})
	if err != nil {
		t.Fatal(err)
	}
	read := make(chan error, 1)
	go func() {
		_, err := p.Read(make([]byte, 16))
		read <- err
	}()
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-read:
		if !errors.Is(err, io.EOF) {
			t.Fatalf("Read after Close = %v, want io.EOF", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Read still blocked 10 s after Close")
	}
	if _, err := p.Write([]byte("AT\r")); !errors.Is(err, atkit.ErrPortClosed) {
		t.Fatalf("Write after Close = %v, want ErrPortClosed", err)
	}
}

// TestWriteToAModemThatStoppedReadingTimesOut: nobody reads the master, so
// the line's buffer fills and the write must give up instead of hanging.
func TestWriteToAModemThatStoppedReadingTimesOut(t *testing.T) {
	line := openPTY(t)
	p, err := atkit.OpenPort(testCtx(t), line.Path, atkit.PortConfig{WriteTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	_, err = p.Write(make([]byte, 1<<20))
	if err == nil || !strings.Contains(err.Error(), "not accepted within") {
		t.Fatalf("Write of 1 MiB nobody reads = %v, want a write timeout", err)
	}
}

// TestWriteThatTimedOutLeavesNoWriterBehind: once a write timed out and the
// port is closed, nothing may still be writing. A writer left blocked in
// write(2) resumes when the line drains and then writes the rest of its
// buffer through the closed descriptor's number, which the process has
// meanwhile reused (in this package's tests: the next test's pty, whose
// modem then saw a megabyte of zeros instead of AT+CPIN?).
func TestWriteThatTimedOutLeavesNoWriterBehind(t *testing.T) {
	before := goleak.IgnoreCurrent()
	line := openPTY(t)
	p, err := atkit.OpenPort(testCtx(t), line.Path, atkit.PortConfig{WriteTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Write(make([]byte, 1<<20)); err == nil || !strings.Contains(err.Error(), "not accepted within") {
		t.Fatalf("Write of 1 MiB nobody reads = %v, want a write timeout", err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	// The line is still full and its other side still open: a writer
	// blocked in the kernel would still be there.
	if err := goleak.Find(before); err != nil {
		t.Fatalf("after a timed-out Write and Close, a goroutine is still writing:\n%v", err)
	}
}

// waitSignal is a context that closes waiting the first time someone waits
// on it (calls Done): OpenPort waits on its context only while another
// process holds the lock.
type waitSignal struct {
	context.Context
	waiting chan struct{}
	once    sync.Once
}

func (w *waitSignal) Done() <-chan struct{} {
	w.once.Do(func() { close(w.waiting) })
	return w.Context.Done()
}

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}
