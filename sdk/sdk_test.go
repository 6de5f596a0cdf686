package sdk_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cellgate/cellgate/sdk"
)

func TestOpenCarriesEveryFieldBothWays(t *testing.T) {
	p, _ := launch(t, sdk.LaunchConfig{})
	ctx := testCtx(t)
	// The plugin fails Open unless fieldsConfig arrived whole, and answers
	// with doubleInfo, which has every field set.
	info, err := p.Transport().Open(ctx, fieldsConfig)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if info != doubleInfo {
		t.Fatalf("Open returned\n%+v\nwant\n%+v", info, doubleInfo)
	}
}

func TestProvisionListDeleteRoundTrip(t *testing.T) {
	p, _ := launch(t, sdk.LaunchConfig{})
	ctx := testCtx(t)
	tr := p.Transport()
	ca := []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
	b := sdk.Bundle{Profile: 3, CA: ca}
	first, err := tr.Provision(ctx, b)
	if err != nil {
		t.Fatalf("Provision: %v", err)
	}
	if first.Profile != 3 || first.AuthMode != 1 || len(first.Downloaded) != 1 || len(first.Kept) != 0 {
		t.Fatalf("first Provision report %+v: want profile 3, authmode 1, one download", first)
	}
	again, err := tr.Provision(ctx, b)
	if err != nil {
		t.Fatalf("second Provision: %v", err)
	}
	if !reflect.DeepEqual(again.Kept, first.Downloaded) || len(again.Downloaded) != 0 {
		t.Fatalf("second Provision report %+v: want %v kept and nothing downloaded", again, first.Downloaded)
	}
	names, err := tr.ListCerts(ctx)
	if err != nil || !reflect.DeepEqual(names, first.Downloaded) {
		t.Fatalf("ListCerts = %v, %v; want %v", names, err, first.Downloaded)
	}
	if err := tr.DeleteCert(ctx, names[0]); err != nil {
		t.Fatalf("DeleteCert: %v", err)
	}
	if names, err := tr.ListCerts(ctx); err != nil || len(names) != 0 {
		t.Fatalf("ListCerts after delete = %v, %v; want none", names, err)
	}
}

// TestTypedErrorsCrossTheBoundary proves that each typed error a plugin
// returns, wrapped or not, arrives in the agent usable with errors.As, with
// every field, and with the plugin's wrapping context in its message.
func TestTypedErrorsCrossTheBoundary(t *testing.T) {
	p, _ := launch(t, sdk.LaunchConfig{})
	ctx := testCtx(t)
	tr := p.Transport()
	open := func(fail string) func() error {
		return func() error {
			_, err := tr.Open(ctx, sdk.ModemConfig{Port: "/dev/ttyUSB9", Model: "double", RegistrationTimeout: 90 * time.Second, Options: map[string]string{"fail": fail}})
			return err
		}
	}
	cases := []struct {
		name    string
		call    func() error
		target  any // pointer to a typed error pointer
		want    any
		message string
	}{
		{"modem error wrapped", open("modem"), new(*sdk.ModemError),
			&sdk.ModemError{Op: "AT+CPIN?", Code: 10, Text: "+CME ERROR: SIM not inserted"},
			"plugin Open: double: sim ready: AT+CPIN?: +CME ERROR: SIM not inserted (code 10)"},
		{"modem error without words", open("modem-bare"), new(*sdk.ModemError),
			&sdk.ModemError{Op: "AT+CGACT=1,1", Code: -1},
			"plugin Open: AT+CGACT=1,1: refused by the modem"},
		{"network error with the vendor's words", open("net"), new(*sdk.NetError),
			&sdk.NetError{Op: "start", Session: -1, Kind: sdk.NetNoNetwork, Vendor: "double", Code: 17, Text: "+XSTART: 17 (no network)"},
			"plugin Open: start: +XSTART: 17 (no network)"},
		{"network error of a kind this side does not know", open("net-future"), new(*sdk.NetError),
			&sdk.NetError{Op: "start", Session: -1, Kind: sdk.NetOther, Vendor: "double", Code: 99},
			"plugin Open: start: network operation failed (double code 99)"},
		{"option refused", open("option"), new(*sdk.OptionError),
			&sdk.OptionError{Key: "speed", Reason: `"warp" is not one of fast, slow`},
			`plugin Open: modem option speed: "warp" is not one of fast, slow`},
		{"serial error", open("serial"), new(*sdk.SerialError),
			&sdk.SerialError{Op: "open", Port: "/dev/ttyUSB9", Err: "no such file or directory"},
			"plugin Open: double: serial port /dev/ttyUSB9: open: no such file or directory"},
		{"timeout", open("timeout"), new(*sdk.TimeoutError),
			&sdk.TimeoutError{Op: "registration", After: 90 * time.Second},
			"plugin Open: registration: no answer from the modem after 1m30s"},
		{"model mismatch", func() error {
			_, err := tr.Open(ctx, sdk.ModemConfig{Model: "sim7600"})
			return err
		}, new(*sdk.ModelMismatchError),
			&sdk.ModelMismatchError{Want: "sim7600", Got: "CELLGATE-TEST-DOUBLE"},
			"plugin Open: modem model mismatch: want sim7600, modem reports CELLGATE-TEST-DOUBLE"},
		{"bundle refused", func() error {
			_, err := tr.Provision(ctx, sdk.Bundle{Profile: 0, CA: []byte("not pem")})
			return err
		}, new(*sdk.BundleError),
			&sdk.BundleError{Field: "ca", Reason: "no PEM block found"},
			"plugin Provision: bundle ca: no PEM block found"},
		{"untyped", open("untyped"), new(*sdk.PluginError),
			&sdk.PluginError{Op: "Open", Message: "double: something without a type"},
			"plugin Open: double: something without a type"},
		{"handshake refused at dial", func() error {
			_, err := tr.Dial(ctx, sdk.DialRequest{Host: "fail-dial", Port: 8883})
			return err
		}, new(*sdk.NetError),
			&sdk.NetError{Op: "open", Session: 0, Kind: sdk.NetHandshake, Vendor: "double", Code: 15, Text: "+XOPEN: 0,15 (handshake error)"},
			"plugin Dial: double: dial fail-dial:8883: open session 0: +XOPEN: 0,15 (handshake error)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { checkTypedError(t, tc.call(), tc.target, tc.want, tc.message) })
	}
	t.Run("session errors", func(t *testing.T) { sessionErrorsCrossTheBoundary(t, ctx, p) })
}

// checkTypedError fails unless err is an error that errors.As finds in
// target (a pointer to a typed error pointer) equal to want, with message
// as its whole text.
func checkTypedError(t *testing.T, err error, target, want any, message string) {
	t.Helper()
	if err == nil {
		t.Fatal("call succeeded, want an error")
	}
	if !errors.As(err, target) {
		t.Fatalf("errors.As(%q, %T) = false", err, target)
	}
	got := reflect.ValueOf(target).Elem().Interface()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("typed error = %#v, want %#v", got, want)
	}
	if err.Error() != message {
		t.Fatalf("message = %q\nwant      %q", err.Error(), message)
	}
}

// sessionErrorsCrossTheBoundary checks that the typed errors of a session's
// Recv, Send and Close arrive whole, and that a session's end is sticky.
func sessionErrorsCrossTheBoundary(t *testing.T, ctx context.Context, p *sdk.Plugin) {
	t.Helper()
	recvFail := dial(t, ctx, p, "fail-recv")
	if f, err := recvFail.Recv(ctx); err != nil || string(f.Data) != "x" {
		t.Fatalf("first Recv = %+v, %v; want data x", f, err)
	}
	_, err := recvFail.Recv(ctx)
	var ne *sdk.NetError
	if !errors.As(err, &ne) || *ne != (sdk.NetError{Op: "recv", Session: recvFail.ID(), Kind: sdk.NetNoNetwork, Vendor: "double", Code: 9}) {
		t.Fatalf("Recv error = %v, want a no-network NetError on session %d", err, recvFail.ID())
	}
	if _, again := recvFail.Recv(ctx); again == nil || again.Error() != err.Error() {
		t.Fatalf("Recv after the end = %v, want the same error again", again)
	}

	sendFail := dial(t, ctx, p, "fail-send")
	// Send returns once the bytes are in flight; the plugin's failure
	// surfaces on the next call (here: Close, which waits for them).
	var serr *sdk.SerialError
	err = sendFail.Send(ctx, []byte("payload"))
	if err == nil {
		err = sendFail.Close(ctx)
		if err == nil {
			err = sendFail.Send(ctx, []byte("more"))
		}
	}
	if !errors.As(err, &serr) || *serr != (sdk.SerialError{Op: "write", Port: "/dev/ttyDOUBLE", Err: "input/output error"}) {
		t.Fatalf("Send error = %v, want the plugin's SerialError", err)
	}

	closeFail := dial(t, ctx, p, "fail-close")
	var terr *sdk.TimeoutError
	err = closeFail.Close(ctx)
	if !errors.As(err, &terr) || *terr != (sdk.TimeoutError{Op: "close result", After: 5 * time.Second}) {
		t.Fatalf("Close error = %v, want the plugin's TimeoutError", err)
	}
	if again := closeFail.Close(ctx); again != err {
		t.Fatalf("second Close = %v, want the first result %v", again, err)
	}
}

// TestErrorMessagesQuoteTheModem: the sdk adds no vendor's words; a
// message is the operation and the modem's words as the driver quoted
// them, or the neutral kind and the vendor's code when there were none.
func TestErrorMessagesQuoteTheModem(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{&sdk.NetError{Op: "open", Session: 0, Kind: sdk.NetHandshake, Vendor: "simcom", Code: 15, Text: "+CCHOPEN: 0,15 (handshake error)"},
			"open session 0: +CCHOPEN: 0,15 (handshake error)"},
		{&sdk.NetError{Op: "open", Session: 1, Kind: sdk.NetHandshake, Vendor: "simcom", Code: 15}, "open session 1: TLS handshake failed (simcom code 15)"},
		{&sdk.NetError{Op: "start", Session: -1, Kind: sdk.NetNoNetwork}, "start: no packet data network"},
		{&sdk.NetError{Op: "dial", Session: -1, Kind: sdk.NetKind(42), Vendor: "acme", Code: 7}, "dial: network operation failed (acme code 7)"},
		{&sdk.ModemError{Op: "AT+CPIN?", Code: -1, Text: "+CME ERROR: SIM busy"}, "AT+CPIN?: +CME ERROR: SIM busy"},
		{&sdk.ModemError{Op: "AT+CPIN?", Code: 10, Text: "+CME ERROR: 10"}, "AT+CPIN?: +CME ERROR: 10"},
		{&sdk.ModemError{Op: "AT+CPIN?", Code: 10, Text: "+CME ERROR: SIM not inserted"}, "AT+CPIN?: +CME ERROR: SIM not inserted (code 10)"},
		{&sdk.ModemError{Op: "AT+CPIN?", Code: 10}, "AT+CPIN?: modem error 10"},
		{&sdk.ModemError{Op: "AT+CGACT=1,1", Code: -1, Text: "ERROR"}, "AT+CGACT=1,1: ERROR"},
		{&sdk.BundleError{Field: "key", Reason: "does not match the certificate"}, "bundle key: does not match the certificate"},
		{&sdk.OptionError{Key: "negotiate_time", Reason: "want a duration"}, "modem option negotiate_time: want a duration"},
	} {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("%#v.Error() = %q, want %q", tc.err, got, tc.want)
		}
	}
}

func TestNetKindsHaveNames(t *testing.T) {
	names := map[string]bool{}
	for k := sdk.NetOther; k <= sdk.NetInvalid; k++ {
		name := k.String()
		if name == "" || strings.HasPrefix(name, "NetKind(") || names[name] {
			t.Errorf("NetKind %d has name %q: want a unique snake-case name", int(k), name)
		}
		names[name] = true
	}
	if got := sdk.NetKind(sdk.NetInvalid + 1).String(); got != fmt.Sprintf("NetKind(%d)", int(sdk.NetInvalid+1)) {
		t.Errorf("an unknown kind's name = %q", got)
	}
	err := fmt.Errorf("dial broker: %w", &sdk.NetError{Op: "open", Session: 0, Kind: sdk.NetTimeout})
	if kind, ok := sdk.NetKindOf(err); !ok || kind != sdk.NetTimeout {
		t.Errorf("NetKindOf = %v, %v; want timeout, true", kind, ok)
	}
	if _, ok := sdk.NetKindOf(errors.New("plain")); ok {
		t.Error("NetKindOf found a kind in an untyped error")
	}
}

func TestEventsThenEOF(t *testing.T) {
	p, _ := launch(t, sdk.LaunchConfig{})
	ctx := testCtx(t)
	s := dial(t, ctx, p, "events")
	f, err := s.Recv(ctx)
	if err != nil || string(f.Data) != "hello" || f.Event != nil {
		t.Fatalf("first Recv = %+v, %v; want data hello", f, err)
	}
	f, err = s.Recv(ctx)
	want := sdk.SessionEvent{Kind: sdk.EventPeerClosed, Code: 4, Detail: fmt.Sprintf("+XPEERCLOSED: %d", s.ID())}
	if err != nil || f.Event == nil || *f.Event != want || f.Data != nil {
		t.Fatalf("second Recv = %+v, %v; want event %+v", f, err, want)
	}
	if _, err := s.Recv(ctx); !errors.Is(err, io.EOF) {
		t.Fatalf("third Recv error = %v, want io.EOF", err)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := s.Recv(ctx); !errors.Is(err, sdk.ErrSessionClosed) {
		t.Fatalf("Recv after Close = %v, want ErrSessionClosed", err)
	}
	if err := s.Send(ctx, []byte("x")); !errors.Is(err, sdk.ErrSessionClosed) {
		t.Fatalf("Send after Close = %v, want ErrSessionClosed", err)
	}
}

// echoRoundTrip sends n pseudo-random bytes from seed through an echo
// session in random-sized writes while reading concurrently, and checks
// that exactly the plugin-transformed bytes come back.
func echoRoundTrip(ctx context.Context, s sdk.Session, n int, seed uint64) error {
	src := make([]byte, n)
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	for i := range src {
		src[i] = byte(rng.Uint32())
	}
	sendErr := make(chan error, 1)
	go func() {
		for off := 0; off < n; {
			k := min(n-off, 1+rng.IntN(20000))
			if err := s.Send(ctx, src[off:off+k]); err != nil {
				sendErr <- fmt.Errorf("Send at offset %d: %w", off, err)
				return
			}
			off += k
		}
		sendErr <- nil
	}()
	got, recvErr := recvAll(ctx, s, n)
	if err := <-sendErr; err != nil {
		return err
	}
	if recvErr != nil {
		return recvErr
	}
	for i := range src {
		src[i] ^= 0xA5
	}
	if !bytes.Equal(got, src) {
		return fmt.Errorf("echoed data differs: sha256 %x, want %x", sha256.Sum256(got), sha256.Sum256(src))
	}
	return nil
}

func TestSessionCarries1MiBEachWayIntact(t *testing.T) {
	p, _ := launch(t, sdk.LaunchConfig{})
	ctx := testCtx(t)
	s := dial(t, ctx, p, "echo")
	if err := echoRoundTrip(ctx, s, 1<<20, 1); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

func TestTwoSessionsAtOnce(t *testing.T) {
	p, _ := launch(t, sdk.LaunchConfig{})
	ctx := testCtx(t)
	a, b := dial(t, ctx, p, "echo"), dial(t, ctx, p, "echo")
	if ids := []int{a.ID(), b.ID()}; !(ids[0] == 0 && ids[1] == 1 || ids[0] == 1 && ids[1] == 0) {
		t.Fatalf("session ids %v, want 0 and 1", ids)
	}
	// The double, like many modems, has two sessions only.
	_, err := p.Transport().Dial(ctx, sdk.DialRequest{Host: "echo", Port: 1})
	if kind, ok := sdk.NetKindOf(err); !ok || kind != sdk.NetBusy {
		t.Fatalf("third Dial = %v, want a NetError of kind busy", err)
	}
	errs := make(chan error, 2)
	for i, s := range []sdk.Session{a, b} {
		go func() { errs <- echoRoundTrip(ctx, s, 256<<10, uint64(10+i)) }()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// TestFlowControlBoundsBytesInFlight uses a session whose plugin-side Send
// accepts a frame only when the test grants it, so the test knows exactly
// how many bytes the plugin accepted and can check the agent side against
// its window at every step.
func TestFlowControlBoundsBytesInFlight(t *testing.T) {
	const window = 16 << 10
	ctl := newControl(t)
	p, _ := launch(t, sdk.LaunchConfig{SendWindow: window, Env: []string{ctl.env()}})
	ctx := testCtx(t)
	s := dial(t, ctx, p, "gated")

	// With nothing accepted, one window's worth of bytes goes out...
	if err := s.Send(ctx, make([]byte, window)); err != nil {
		t.Fatalf("Send of one window with nothing accepted: %v", err)
	}
	// ...and not one byte more: Send blocks until its ctx gives up.
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	err := s.Send(short, []byte{1})
	cancel()
	var partial *sdk.PartialSendError
	if !errors.Is(err, context.DeadlineExceeded) || errors.As(err, &partial) {
		t.Fatalf("Send beyond the window = %v, want a plain context.DeadlineExceeded", err)
	}

	// Now a long transfer, granting one plugin-side Send at a time. handed
	// is how many bytes the agent's Send calls have returned for; the
	// plugin accepted at most granted; the window says handed-granted can
	// never exceed it.
	const total = 96 << 10
	handed, writerErr := sendInChunks(ctx, s, window, total)
	granted, requested, maxInFlight := 0, 0, window
	for requested < window+total {
		line, err := ctl.next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		n, err := parseSend(line)
		if err != nil {
			t.Fatal(err)
		}
		requested += n
		// The plugin asks for one Send at a time: everything it asked for
		// before this one was granted.
		if requested-n != granted {
			t.Fatalf("the plugin asked to send %d bytes while %d were not yet accepted", n, requested-n-granted)
		}
		maxInFlight = max(maxInFlight, checkInFlight(t, handed, granted, window))
		granted += n
		if err := ctl.grant(); err != nil {
			t.Fatal(err)
		}
	}
	if err := <-writerErr; err != nil {
		t.Fatalf("writer: %v", err)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if granted != window+total {
		t.Fatalf("plugin accepted %d bytes, want %d", granted, window+total)
	}
	t.Logf("max bytes in flight %d (window %d), %d bytes accepted one Send at a time", maxInFlight, window, granted)
}

// sendInChunks sends total bytes on s from a goroutine, in chunks of 1000
// bytes. After each Send returns it puts on handed how many bytes the
// agent's Sends have returned for, counting the already sent bytes before;
// the writer's result comes on the error channel.
func sendInChunks(ctx context.Context, s sdk.Session, before, total int) (handed <-chan int, done <-chan error) {
	h := make(chan int, total)
	writerErr := make(chan error, 1)
	go func() {
		chunk := make([]byte, 1000) // not a divisor of the frame size, on purpose
		for n := 0; n < total; {
			k := min(len(chunk), total-n)
			if err := s.Send(ctx, chunk[:k]); err != nil {
				writerErr <- err
				return
			}
			n += k
			h <- before + n
		}
		writerErr <- nil
	}()
	return h, writerErr
}

// checkInFlight takes every count waiting on handed and fails if the agent
// handed more than window bytes beyond the granted ones the plugin
// accepted. It returns the most bytes in flight it saw (0 if none).
func checkInFlight(t *testing.T, handed <-chan int, granted, window int) int {
	t.Helper()
	most := 0
	for {
		select {
		case h := <-handed:
			if h-granted > window {
				t.Fatalf("agent handed %d bytes while the plugin accepted at most %d: %d in flight > window %d", h, granted, h-granted, window)
			}
			most = max(most, h-granted)
		default:
			return most
		}
	}
}

func TestCancellationIsHonoured(t *testing.T) {
	ctl := newControl(t)
	p, _ := launch(t, sdk.LaunchConfig{Env: []string{ctl.env()}, SendWindow: 4096})
	ctx := testCtx(t)
	tr := p.Transport()

	t.Run("Dial", func(t *testing.T) { cancelledDialReachesThePlugin(t, ctx, tr, ctl) })

	t.Run("unary call", func(t *testing.T) {
		octx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer cancel()
		_, err := tr.Open(octx, sdk.ModemConfig{Options: map[string]string{"fail": "hang"}})
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Open past its deadline = %v, want context.DeadlineExceeded", err)
		}
	})

	t.Run("Recv", func(t *testing.T) {
		s := dial(t, ctx, p, "echo")
		rctx, cancel := context.WithCancel(ctx)
		res := make(chan error, 1)
		go func() {
			_, err := s.Recv(rctx)
			res <- err
		}()
		cancel()
		if err := <-res; !errors.Is(err, context.Canceled) {
			t.Fatalf("Recv after cancel = %v, want context.Canceled", err)
		}
		// Abandoning a Recv leaves the session usable.
		if err := echoRoundTrip(ctx, s, 10000, 3); err != nil {
			t.Fatalf("session after a cancelled Recv: %v", err)
		}
	})

	t.Run("Send", func(t *testing.T) { cancelledSendIsPartialAndLeavesTheSession(t, ctx, p, ctl) })
}

// cancelledDialReachesThePlugin cancels a Dial the double holds and checks
// that the caller gets context.Canceled and the plugin's Dial saw it too.
func cancelledDialReachesThePlugin(t *testing.T, ctx context.Context, tr sdk.SecureTransport, ctl *control) {
	t.Helper()
	dctx, cancel := context.WithCancel(ctx)
	res := make(chan error, 1)
	go func() {
		_, err := tr.Dial(dctx, sdk.DialRequest{Host: "slowdial", Port: 1})
		res <- err
	}()
	if line, err := ctl.next(ctx); err != nil || line != "dial-waiting" {
		t.Fatalf("double reported %q, %v; want dial-waiting", line, err)
	}
	cancel()
	if err := <-res; !errors.Is(err, context.Canceled) {
		t.Fatalf("Dial after cancel = %v, want context.Canceled", err)
	}
	// The cancellation reached the plugin's Dial, not only the caller.
	if line, err := ctl.next(ctx); err != nil || line != "dial-canceled" {
		t.Fatalf("double reported %q, %v; want dial-canceled", line, err)
	}
}

// cancelledSendIsPartialAndLeavesTheSession cancels a Send stuck behind a
// full window (4096 bytes, the plugin accepting nothing) and checks that
// it reports what went out, and that the session still works after.
func cancelledSendIsPartialAndLeavesTheSession(t *testing.T, ctx context.Context, p *sdk.Plugin, ctl *control) {
	t.Helper()
	s := dial(t, ctx, p, "gated")
	// The window is 4096 bytes: 10000 bytes cannot all go out while the
	// plugin accepts nothing.
	sctx, cancel := context.WithCancel(ctx)
	res := make(chan error, 1)
	go func() { res <- s.Send(sctx, make([]byte, 10000)) }()
	if line, err := ctl.next(ctx); err != nil || line != "send 4096" {
		t.Fatalf("double reported %q, %v; want send 4096", line, err)
	}
	cancel()
	err := <-res
	var partial *sdk.PartialSendError
	if !errors.As(err, &partial) || partial.Sent != 4096 || !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Send = %v, want PartialSendError{Sent: 4096} wrapping context.Canceled", err)
	}
	if err := ctl.grant(); err != nil {
		t.Fatal(err)
	}
	// The session is still usable after the cancelled Send.
	if err := s.Send(ctx, []byte("after")); err != nil {
		t.Fatalf("Send after a cancelled Send: %v", err)
	}
	for _, want := range []string{"send 5"} {
		if line, err := ctl.next(ctx); err != nil || line != want {
			t.Fatalf("double reported %q, %v; want %q", line, err, want)
		}
		if err := ctl.grant(); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

func TestPluginKilledMidSessionFailsEverythingWithErrPluginExited(t *testing.T) {
	const window = 4096
	ctl := newControl(t)
	p, _ := launch(t, sdk.LaunchConfig{SendWindow: window, Env: []string{ctl.env()}})
	ctx := testCtx(t)
	idle := dial(t, ctx, p, "idle")
	gated := dial(t, ctx, p, "gated")
	if err := gated.Send(ctx, make([]byte, window)); err != nil {
		t.Fatalf("filling the window: %v", err)
	}
	if _, err := ctl.next(ctx); err != nil {
		t.Fatal(err)
	}
	recvErr, sendErr := make(chan error, 1), make(chan error, 1)
	go func() {
		_, err := idle.Recv(ctx)
		recvErr <- err
	}()
	go func() { sendErr <- gated.Send(ctx, []byte("blocked")) }()

	proc, err := os.FindProcess(p.PID())
	if err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	if err := proc.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("SIGKILL plugin pid %d: %v", p.PID(), err)
	}
	for name, ch := range map[string]chan error{"Recv": recvErr, "blocked Send": sendErr} {
		select {
		case err := <-ch:
			if !errors.Is(err, sdk.ErrPluginExited) {
				t.Fatalf("%s = %v, want ErrPluginExited", name, err)
			}
			// The contract's bound, generous against a noisy machine: in
			// practice this takes milliseconds.
			if d := time.Since(killed); d > time.Second {
				t.Fatalf("%s failed %v after the kill, want within 1s", name, d)
			}
		case <-ctx.Done():
			t.Fatalf("%s did not fail after the plugin was killed", name)
		}
	}
	select {
	case <-p.Done():
	case <-ctx.Done():
		t.Fatal("Done not closed after the plugin was killed")
	}
	if !p.Exited() {
		t.Fatal("Exited() = false after Done was closed")
	}
	if _, err := p.Transport().ListCerts(ctx); !errors.Is(err, sdk.ErrPluginExited) {
		t.Fatalf("ListCerts after the kill = %v, want ErrPluginExited", err)
	}
	if _, err := p.Transport().Dial(ctx, sdk.DialRequest{Host: "echo"}); !errors.Is(err, sdk.ErrPluginExited) {
		t.Fatalf("Dial after the kill = %v, want ErrPluginExited", err)
	}
	if err := idle.Send(ctx, []byte("x")); !errors.Is(err, sdk.ErrPluginExited) {
		t.Fatalf("Send on a session of the dead plugin = %v, want ErrPluginExited", err)
	}
	if err := p.Ping(ctx); !errors.Is(err, sdk.ErrPluginExited) {
		t.Fatalf("Ping after the kill = %v, want ErrPluginExited", err)
	}
}

// TestSIGTERMStopsTheModem covers what happens when the agent dies: Launch
// arranges (on Linux) for the plugin to get SIGTERM, and Serve answers it by
// calling Stop before exiting. Here the test sends the signal itself.
func TestSIGTERMStopsTheModem(t *testing.T) {
	ctl := newControl(t)
	p, _ := launch(t, sdk.LaunchConfig{Env: []string{ctl.env()}})
	ctx := testCtx(t)
	s := dial(t, ctx, p, "idle")
	if err := syscall.Kill(p.PID(), syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM plugin pid %d: %v", p.PID(), err)
	}
	if line, err := ctl.next(ctx); err != nil || line != "stopped" {
		t.Fatalf("double reported %q, %v; want stopped", line, err)
	}
	select {
	case <-p.Done():
	case <-ctx.Done():
		t.Fatal("the plugin did not exit after SIGTERM")
	}
	// Stop closed the session before the process went away; which of the
	// two the host saw first depends on timing.
	if _, err := s.Recv(ctx); !errors.Is(err, io.EOF) && !errors.Is(err, sdk.ErrPluginExited) {
		t.Fatalf("Recv after SIGTERM = %v, want io.EOF or ErrPluginExited", err)
	}
}

func TestStopEndsOpenSessions(t *testing.T) {
	p, _ := launch(t, sdk.LaunchConfig{})
	ctx := testCtx(t)
	s := dial(t, ctx, p, "idle")
	if err := p.Transport().Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if _, err := s.Recv(ctx); !errors.Is(err, io.EOF) {
		t.Fatalf("Recv after Stop = %v, want io.EOF", err)
	}
	if err := p.Transport().Stop(ctx); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if err := p.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}

func TestChecksumIsEnforced(t *testing.T) {
	ctx := testCtx(t)
	self := selfPath(t)
	sum, err := sdk.FileSHA256(self)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("matching binary starts, twice in a row", func(t *testing.T) {
		// go-plugin's SecureConfig keeps hash state; a reused one would fail
		// the second start.
		for i := range 2 {
			p, _ := launch(t, sdk.LaunchConfig{SHA256: sum})
			if err := p.Ping(ctx); err != nil {
				t.Fatalf("launch %d: Ping: %v", i+1, err)
			}
			if err := p.Kill(ctx); err != nil {
				t.Fatalf("launch %d: Kill: %v", i+1, err)
			}
			if !p.Exited() {
				t.Fatalf("launch %d: Exited() = false after Kill", i+1)
			}
		}
	})

	t.Run("tampered binary is refused", func(t *testing.T) {
		tampered := copyExecutable(t, self)
		f, err := os.OpenFile(tampered, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write([]byte{0}); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		actual, err := sdk.FileSHA256(tampered)
		if err != nil {
			t.Fatal(err)
		}
		_, err = sdk.Launch(ctx, sdk.LaunchConfig{Path: tampered, SHA256: sum, Env: []string{envPlugin + "=double"}, Logger: slog.New(&recorder{})})
		var ce *sdk.ChecksumError
		if !errors.As(err, &ce) {
			t.Fatalf("Launch of a tampered binary = %v, want a ChecksumError", err)
		}
		for _, part := range []string{tampered, fmt.Sprintf("expected sha256 %x", sum), fmt.Sprintf("actual sha256 %x", actual)} {
			if !strings.Contains(err.Error(), part) {
				t.Errorf("error %q does not say %q", err, part)
			}
		}
	})
}

func copyExecutable(t *testing.T, src string) string {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	dst := t.TempDir() + "/plugin"
	if err := os.WriteFile(dst, data, 0o755); err != nil {
		t.Fatal(err)
	}
	return dst
}

func TestLaunchRefusesWhatItCannotStart(t *testing.T) {
	ctx := testCtx(t)
	dir := t.TempDir()
	notExec := dir + "/plain"
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	notPlugin := dir + "/true"
	if err := os.WriteFile(notPlugin, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, path, want string
		prefixOnly       bool // go-plugin's own words vary with timing
	}{
		{"missing", dir + "/nope", "launch plugin: binary " + dir + "/nope does not exist", false},
		{"not executable", notExec, "launch plugin: " + notExec + " is not executable (mode -rw-r--r--)", false},
		{"directory", dir, "launch plugin: " + dir + " is not a regular file", false},
		{"not a plugin", notPlugin, "launch plugin " + notPlugin + ": ", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := sdk.Launch(ctx, sdk.LaunchConfig{Path: tc.path, Logger: slog.New(&recorder{})})
			switch {
			case err == nil:
				t.Fatal("Launch succeeded, want an error")
			case tc.prefixOnly && !strings.HasPrefix(err.Error(), tc.want):
				t.Fatalf("Launch error = %v\nwant it to start with %q", err, tc.want)
			case !tc.prefixOnly && err.Error() != tc.want:
				t.Fatalf("Launch error = %v\nwant %s", err, tc.want)
			}
		})
	}
}

func TestPluginLogsAreBridgedIntoSlog(t *testing.T) {
	p, rec := launch(t, sdk.LaunchConfig{})
	ctx := testCtx(t)
	if _, err := p.Transport().Open(ctx, sdk.ModemConfig{Port: "/dev/ttyLOG", Model: "double"}); err != nil {
		t.Fatalf("Open: %v", err)
	}
	// The line crosses a pipe and go-plugin's reader goroutine: poll.
	for {
		if r, ok := rec.find("double opened"); ok {
			if r.level != slog.LevelWarn || r.attrs["port"] != "/dev/ttyLOG" || r.attrs["op"] != "open" || !strings.HasPrefix(r.attrs["logger"], "plugin.") {
				t.Fatalf("bridged record %+v: want level WARN with port, op and a plugin logger name", r)
			}
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the plugin's log line never reached the host logger; host log:\n%s", strings.Join(rec.lines(), "\n"))
		case <-time.After(10 * time.Millisecond):
		}
	}
}
