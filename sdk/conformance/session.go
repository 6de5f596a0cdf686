package conformance

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/cellgate/cellgate/sdk"
)

// exchange sends data while reading the same amount back, within the given
// time (and ctx). It returns once its sending goroutine has ended.
func exchange(ctx context.Context, s sdk.Session, data []byte, within time.Duration) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	sendErr := make(chan error, 1)
	go func() {
		for p := data; len(p) > 0; {
			n := min(len(p), 32<<10)
			if err := s.Send(ctx, p[:n]); err != nil {
				sendErr <- err
				return
			}
			p = p[n:]
		}
		sendErr <- nil
	}()
	got := make([]byte, 0, len(data))
	fail := func(err error) ([]byte, error) {
		cancel()
		<-sendErr
		return got, err
	}
	for len(got) < len(data) {
		fr, err := s.Recv(ctx)
		if err != nil {
			return fail(fmt.Errorf("Recv after %d of %d bytes: %w", len(got), len(data), err))
		}
		if fr.Event != nil {
			return fail(fmt.Errorf("event %v after %d of %d bytes", fr.Event.Kind, len(got), len(data)))
		}
		got = append(got, fr.Data...)
	}
	if err := <-sendErr; err != nil {
		return got, fmt.Errorf("Send: %w", err)
	}
	return got, nil
}

// roundTrip sends msg and expects it back whole.
func roundTrip(ctx context.Context, s sdk.Session, msg []byte) error {
	got, err := exchange(ctx, s, msg, time.Minute)
	if err != nil {
		return err
	}
	if !bytes.Equal(got, msg) {
		return fmt.Errorf("echo = %q, want %q", got, msg)
	}
	return nil
}

// untilEvent reads frames until an event and returns the data before it
// and the event; a Recv error first is returned as is.
func untilEvent(ctx context.Context, s sdk.Session) ([]byte, *sdk.SessionEvent, error) {
	var got []byte
	for {
		fr, err := s.Recv(ctx)
		if err != nil {
			return got, nil, err
		}
		if fr.Event != nil {
			return got, fr.Event, nil
		}
		got = append(got, fr.Data...)
	}
}
