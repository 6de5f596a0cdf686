package simcom

import (
	"context"
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/cellgate/cellgate/sdk/atkit/transcript"
)

// scriptedModem is the other end of the serial line in host-side driver
// tests: not a modem emulator but the modem side of a transcript in
// testdata/transcripts, played by sdk/atkit/transcript (see the format
// there). It reads the driver's commands, checks each against the next
// "> " step, and writes the "< " steps that follow; a command that differs
// from the transcript fails the test with both texts and the line.
type scriptedModem struct {
	done chan struct{}
	err  error // the play's outcome; set before done is closed
}

// startScripted returns a Driver whose serial port is the transcript in
// testdata/transcripts/<name>.txt.
func startScripted(t *testing.T, name string) (*Driver, *scriptedModem) {
	t.Helper()
	tr, err := transcript.ParseFile(filepath.Join("testdata", "transcripts", name+".txt"), nil)
	if err != nil {
		t.Fatal(err)
	}
	host, modem := net.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	m := &scriptedModem{done: make(chan struct{})}
	go func() {
		defer close(m.done)
		var p transcript.Player
		if m.err = p.PlayModem(ctx, modem, tr); m.err != nil {
			modem.Close() // fail the driver fast instead of letting it time out
		}
	}()
	d := New(SIM7600, nil)
	d.openPort = func(context.Context, string, int) (io.ReadWriteCloser, error) { return host, nil }
	t.Cleanup(func() {
		host.Close()
		modem.Close()
		cancel()
		<-m.done
		if m.err != nil {
			t.Errorf("transcript %s: %v", name, m.err)
		}
	})
	return d, m
}

// finish waits for the transcript to be played to its end.
func (m *scriptedModem) finish(t *testing.T) {
	t.Helper()
	select {
	case <-m.done:
	case <-time.After(10 * time.Second):
		t.Fatal("transcript not finished within 10 s")
	}
	if m.err != nil {
		t.Fatal(m.err)
	}
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// nameFor is the modem file name the driver gives content of kind ("ca",
// "crt", "key").
func nameFor(kind string, data []byte) string { return SIM7600.store().Name(kind, data) }
