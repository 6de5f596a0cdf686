package sdk

import (
	"context"
	"errors"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestTransportErrorsSpeakNoGRPC: a bare gRPC failure becomes the
// contract's error (context.DeadlineExceeded, ErrPluginExited, ...) in plain
// words; gRPC's "rpc error: code = ... desc =" never reaches the message.
func TestTransportErrorsSpeakNoGRPC(t *testing.T) {
	running := &client{exited: make(chan struct{})}
	gone := make(chan struct{})
	close(gone)
	exited := &client{exited: gone}
	for _, c := range []struct {
		name   string
		c      *client
		err    error
		is     error
		wantIn string
	}{
		{"deadline", running, status.Error(codes.DeadlineExceeded, "context deadline exceeded"), context.DeadlineExceeded, "plugin Open: context deadline exceeded"},
		{"canceled", running, status.Error(codes.Canceled, "context canceled"), context.Canceled, "plugin Open: context canceled"},
		{"exited", exited, status.Error(codes.Unavailable, "error reading from server: EOF"), ErrPluginExited, "plugin Open: plugin process exited (error reading from server: EOF)"},
		{"connection lost", running, status.Error(codes.Unavailable, "connection closed before server preface received"), nil, "plugin Open: connection to the plugin lost (connection closed before server preface received)"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := c.c.transportError("Open", c.err)
			if c.is != nil && !errors.Is(err, c.is) {
				t.Errorf("%v does not match %v", err, c.is)
			}
			if msg := err.Error(); msg != c.wantIn || strings.Contains(msg, "rpc error") || strings.Contains(msg, "code =") {
				t.Errorf("message %q, want %q", msg, c.wantIn)
			}
		})
	}
}
