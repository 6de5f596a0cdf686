//go:build linux

package atkit_test

import (
	"bufio"
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/cellgate/cellgate/sdk/at"
	"github.com/cellgate/cellgate/sdk/atkit"
	"github.com/cellgate/cellgate/sdk/atkit/transcript"
)

// openChannel opens the slave of a fresh pty with OpenPort and runs an AT
// channel on it, closed at cleanup; the pty's master is returned for the
// modem's side.
func openChannel(t *testing.T) (*at.Channel, *linePTY) {
	t.Helper()
	line := openPTY(t)
	p, err := atkit.OpenPort(testCtx(t), line.Path, atkit.PortConfig{})
	if err != nil {
		t.Fatal(err)
	}
	ch := at.New(p)
	t.Cleanup(func() { ch.Close() })
	return ch, line
}

// scripted returns a channel whose modem is the transcript src, played by
// sdk/atkit/transcript on the pty's master: a command that differs from the
// transcript fails the test with both texts. wait blocks until the whole
// transcript was played.
func scripted(t *testing.T, src string) (ch *at.Channel, wait func()) {
	t.Helper()
	tr, err := transcript.Parse(t.Name(), []byte(src), nil)
	if err != nil {
		t.Fatal(err)
	}
	ch, line := openChannel(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		var p transcript.Player
		done <- p.PlayModem(ctx, line.Modem, tr)
	}()
	var played bool
	var playErr error
	wait = func() {
		t.Helper()
		if played {
			return
		}
		select {
		case playErr = <-done:
			played = true
		case <-time.After(30 * time.Second):
			t.Fatal("transcript not played to its end within 30 s")
		}
		if playErr != nil {
			t.Fatalf("modem side: %v", playErr)
		}
	}
	t.Cleanup(func() {
		cancel()
		line.Modem.Close() // ends a play still waiting for the host
		if !played {
			if err := <-done; err != nil && ctx.Err() == nil {
				t.Errorf("modem side: %v", err)
			}
		}
	})
	return ch, wait
}

// responder plays a modem that answers each command line with answer(cmd),
// whatever the timing. When swallow is positive, the modem first takes that
// many bytes as the payload of a command a dead driver sent (answering
// nothing until it has them all, then OK). It runs until the test ends.
func responder(t *testing.T, line *linePTY, swallow int, answer func(cmd string) string) {
	t.Helper()
	done := make(chan struct{})
	t.Cleanup(func() {
		line.Modem.Close()
		<-done
	})
	go func() {
		defer close(done)
		r := bufio.NewReader(line.Modem)
		if swallow > 0 {
			if _, err := io.CopyN(io.Discard, r, int64(swallow)); err != nil {
				return
			}
			if _, err := line.Modem.WriteString("\r\nOK\r\n"); err != nil {
				return
			}
		}
		for {
			cmd, err := r.ReadString('\r')
			if err != nil {
				return
			}
			if cmd = strings.TrimSpace(cmd); cmd == "" {
				continue
			}
			if _, err := line.Modem.WriteString(answer(cmd)); err != nil {
				return
			}
		}
	}()
}

// okResponses answers like a healthy modem with echo off, including the
// AT channel's resynchronisation probe.
func okResponses(cmd string) string {
	if cmd == "AT+CMEE?" {
		return "\r\n+CMEE: 2\r\n\r\nOK\r\n"
	}
	return "\r\nOK\r\n"
}
