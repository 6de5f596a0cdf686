package sdktest_test

import (
	"bytes"
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/cellgate/cellgate/sdk"
	"github.com/cellgate/cellgate/sdk/sdktest"
)

// envRole makes the test binary a plugin serving a Transport, for
// TestServedAcrossThePluginBoundary.
const envRole = "SDKTEST_TEST_ROLE"

func TestMain(m *testing.M) {
	if os.Getenv(envRole) == "plugin" {
		sdk.Serve(sdktest.New(sdktest.Config{Model: "double", Dial: servedDial}))
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

// servedDial makes host "events" a session whose far side says "hello" and
// hangs up; every other host echoes.
func servedDial(_ context.Context, s *sdktest.Session) (sdktest.SessionConfig, error) {
	if s.Request().Host == "events" {
		s.Deliver([]byte("hello"))
		s.Disconnect(sdk.SessionEvent{Kind: sdk.EventPeerClosed, Detail: "peer closed"})
		return sdktest.SessionConfig{}, nil
	}
	return sdktest.SessionConfig{Echo: true}, nil
}

// testCtx bounds a test, so a regression fails in a minute instead of at the
// package timeout.
func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// doneCtx is a context that has already ended.
func doneCtx() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

func dial(t *testing.T, tr sdk.SecureTransport, host string) *sdktest.Session {
	t.Helper()
	s, err := tr.Dial(testCtx(t), sdk.DialRequest{Host: host, Port: 443})
	if err != nil {
		t.Fatalf("Dial %s: %v", host, err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s.(*sdktest.Session)
}

func testPEM(blockType, body string) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: blockType, Bytes: []byte(body)})
}

// wantRecv fails unless s's next Recv is want (compared deeply) and err.
func wantRecv(t *testing.T, s sdk.Session, want sdk.Frame, wantErr error) {
	t.Helper()
	got, err := s.Recv(testCtx(t))
	if !errors.Is(err, wantErr) || !reflect.DeepEqual(got, want) {
		t.Fatalf("Recv = %+v, %v; want %+v, %v", got, err, want, wantErr)
	}
}

func TestOpenChecksTheModelAndReportsInfo(t *testing.T) {
	ctx := testCtx(t)
	info, err := sdktest.New(sdktest.Config{}).Open(ctx, sdk.ModemConfig{Model: "anything"})
	if err != nil || info != sdktest.DefaultInfo() {
		t.Fatalf("zero Config: Open = %+v, %v; want DefaultInfo, nil", info, err)
	}

	custom := sdk.ModemInfo{Model: "OTHER", IMEI: "1"}
	tr := sdktest.New(sdktest.Config{Model: "m1", Info: custom})
	for _, model := range []string{"", "m1"} {
		if info, err := tr.Open(ctx, sdk.ModemConfig{Model: model}); err != nil || info != custom {
			t.Errorf("Open with model %q = %+v, %v; want Config.Info", model, info, err)
		}
	}
	_, err = tr.Open(ctx, sdk.ModemConfig{Model: "m2"})
	var mm *sdk.ModelMismatchError
	if !errors.As(err, &mm) || *mm != (sdk.ModelMismatchError{Want: "m2", Got: "OTHER"}) {
		t.Fatalf("Open of another model = %v, want ModelMismatchError{m2, OTHER}", err)
	}
}

func TestHooksFailOrBlockTheirCall(t *testing.T) {
	refused := &sdk.ModemError{Op: "AT+CPIN?", Code: 14, Text: "SIM busy"}
	var opened sdk.ModemConfig
	tr := sdktest.New(sdktest.Config{
		Open: func(ctx context.Context, cfg sdk.ModemConfig) error {
			opened = cfg
			if cfg.Port == "/dev/hang" {
				<-ctx.Done()
				return ctx.Err()
			}
			return refused
		},
		Provision: func(context.Context, sdk.Bundle) error { return refused },
		Stop:      func(context.Context) error { return refused },
	})
	ctx := testCtx(t)
	if _, err := tr.Open(ctx, sdk.ModemConfig{Port: "/dev/ttyX"}); err != refused || opened.Port != "/dev/ttyX" {
		t.Errorf("Open = %v with the hook seeing %q; want the hook's error, seeing /dev/ttyX", err, opened.Port)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := tr.Open(short, sdk.ModemConfig{Port: "/dev/hang"}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("hanging Open = %v, want context.DeadlineExceeded", err)
	}
	if _, err := tr.Provision(ctx, sdk.Bundle{CA: testPEM("CERTIFICATE", "ca")}); err != refused {
		t.Errorf("Provision = %v, want the hook's error", err)
	}
	if names, _ := tr.ListCerts(ctx); len(names) != 0 {
		t.Errorf("a refused Provision stored %v", names)
	}
	s := dial(t, tr, "kept")
	if err := tr.Stop(ctx); err != refused {
		t.Errorf("Stop = %v, want the hook's error", err)
	}
	if !s.Deliver([]byte("x")) {
		t.Error("a Stop its hook refused ended a session")
	}
}

func TestProvisionIsIdempotentAndRotationSafe(t *testing.T) {
	ctx := testCtx(t)
	tr := sdktest.New(sdktest.Config{})
	ca, cert1, key1 := testPEM("CERTIFICATE", "ca"), testPEM("CERTIFICATE", "client 1"), testPEM("PRIVATE KEY", "key 1")
	cert2, key2 := testPEM("CERTIFICATE", "client 2"), testPEM("PRIVATE KEY", "key 2")

	first, err := tr.Provision(ctx, sdk.Bundle{Profile: 0, CA: ca, Cert: cert1, Key: key1})
	if err != nil {
		t.Fatal(err)
	}
	if first.AuthMode != 2 || len(first.Downloaded) != 3 || len(first.Kept)+len(first.Deleted) != 0 {
		t.Fatalf("first Provision = %+v, want authmode 2 and three downloads", first)
	}
	for _, name := range first.Downloaded {
		if !strings.HasSuffix(name, ".pem") || strings.Count(name, "_") != 1 {
			t.Errorf("file name %q, want <field>_<hash>.pem", name)
		}
	}
	again, err := tr.Provision(ctx, sdk.Bundle{Profile: 0, CA: ca, Cert: cert1, Key: key1})
	if err != nil || !reflect.DeepEqual(again.Kept, first.Downloaded) || len(again.Downloaded)+len(again.Deleted) != 0 {
		t.Fatalf("second Provision = %+v, %v; want everything kept", again, err)
	}

	// Profile 1 shares the CA, so rotating profile 0 must keep it.
	if rep, err := tr.Provision(ctx, sdk.Bundle{Profile: 1, CA: ca}); err != nil || rep.AuthMode != 1 || len(rep.Kept) != 1 {
		t.Fatalf("Provision of profile 1 = %+v, %v; want the CA kept, authmode 1", rep, err)
	}
	rot, err := tr.Provision(ctx, sdk.Bundle{Profile: 0, CA: ca, Cert: cert2, Key: key2})
	if err != nil {
		t.Fatal(err)
	}
	if len(rot.Downloaded) != 2 || len(rot.Kept) != 1 || len(rot.Deleted) != 2 {
		t.Fatalf("rotation = %+v, want the new pair downloaded, the CA kept, the old pair deleted", rot)
	}
	names, err := tr.ListCerts(ctx)
	if want := append(rot.Kept, rot.Downloaded...); err != nil || !sameSet(names, want) {
		t.Fatalf("ListCerts = %v, %v; want %v", names, err, want)
	}

	if rep, err := tr.Provision(ctx, sdk.Bundle{Profile: 2, Insecure: true}); err != nil || rep.AuthMode != 0 {
		t.Errorf("insecure Provision = %+v, %v; want authmode 0", rep, err)
	}
	if err := tr.DeleteCert(ctx, rot.Kept[0]); err != nil {
		t.Fatalf("DeleteCert: %v", err)
	}
	var me *sdk.ModemError
	if err := tr.DeleteCert(ctx, rot.Kept[0]); !errors.As(err, &me) {
		t.Fatalf("DeleteCert of a missing file = %v, want a ModemError", err)
	}
	if names, _ := tr.ListCerts(ctx); len(names) != 2 {
		t.Fatalf("ListCerts after DeleteCert = %v, want the two client files", names)
	}
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	seen := map[string]bool{}
	for _, s := range a {
		seen[s] = true
	}
	for _, s := range b {
		if !seen[s] {
			return false
		}
	}
	return true
}

func TestProvisionRefusesBrokenBundles(t *testing.T) {
	ca, cert, key := testPEM("CERTIFICATE", "ca"), testPEM("CERTIFICATE", "c"), testPEM("PRIVATE KEY", "k")
	for _, tc := range []struct {
		name  string
		b     sdk.Bundle
		field string
	}{
		{"ProfileOutOfRange", sdk.Bundle{Profile: 10, CA: ca}, "profile"},
		{"CANotPEM", sdk.Bundle{CA: []byte("not pem")}, "ca"},
		{"KeyNotPEM", sdk.Bundle{CA: ca, Cert: cert, Key: []byte("not pem")}, "key"},
		{"CertWithoutKey", sdk.Bundle{CA: ca, Cert: cert}, "key"},
		{"KeyWithoutCert", sdk.Bundle{CA: ca, Key: key}, "cert"},
		{"NoCAWithoutInsecure", sdk.Bundle{}, "ca"},
		{"UnknownTLSVersion", sdk.Bundle{CA: ca, TLSVersion: "1.3"}, "tls_version"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := sdktest.New(sdktest.Config{})
			_, err := tr.Provision(testCtx(t), tc.b)
			var be *sdk.BundleError
			if !errors.As(err, &be) || be.Field != tc.field {
				t.Fatalf("Provision = %v, want a BundleError for %s", err, tc.field)
			}
			if names, _ := tr.ListCerts(testCtx(t)); len(names) != 0 {
				t.Fatalf("a refused bundle stored %v", names)
			}
		})
	}
}

func TestDialHandsOutFreeIDsAndRefusesWhenBusy(t *testing.T) {
	ctx := testCtx(t)
	refuse := errors.New("refused by the hook")
	tr := sdktest.New(sdktest.Config{Dial: func(_ context.Context, s *sdktest.Session) (sdktest.SessionConfig, error) {
		if s.Request().Host == "refused" {
			return sdktest.SessionConfig{}, refuse
		}
		return sdktest.SessionConfig{Echo: true}, nil
	}})
	if _, err := tr.Dial(ctx, sdk.DialRequest{Host: "refused"}); err != refuse {
		t.Fatalf("refused Dial = %v, want the hook's error", err)
	}
	a, b := dial(t, tr, "a"), dial(t, tr, "b")
	if a.ID() != 0 || b.ID() != 1 || a.Request().Host != "a" {
		t.Fatalf("ids %d, %d (host %q); want 0 and 1, host a: the refused Dial must free its id", a.ID(), b.ID(), a.Request().Host)
	}
	_, err := tr.Dial(ctx, sdk.DialRequest{Host: "c"})
	var ne *sdk.NetError
	if !errors.As(err, &ne) || ne.Kind != sdk.NetBusy || ne.Session != -1 {
		t.Fatalf("third Dial = %v, want a NetError of kind busy", err)
	}
	if err := a.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if c := dial(t, tr, "c"); c.ID() != 0 {
		t.Fatalf("Dial after closing session 0 got id %d, want 0", c.ID())
	}
	if more := sdktest.New(sdktest.Config{MaxSessions: 3}); dial(t, more, "x").ID()+dial(t, more, "y").ID()+dial(t, more, "z").ID() != 3 {
		t.Fatal("MaxSessions 3 did not give ids 0, 1, 2")
	}
}

func TestEchoCopiesTransformsAndBoundsItsBacklog(t *testing.T) {
	ctx := testCtx(t)
	tr := sdktest.New(sdktest.Config{Dial: func(context.Context, *sdktest.Session) (sdktest.SessionConfig, error) {
		return sdktest.SessionConfig{Echo: true, Transform: bytes.ToUpper}, nil
	}})
	s := dial(t, tr, "echo")
	buf := []byte("hello")
	if err := s.Send(ctx, buf); err != nil {
		t.Fatal(err)
	}
	copy(buf, "XXXXX") // the caller may reuse its buffer once Send returned
	wantRecv(t, s, sdk.Frame{Data: []byte("HELLO")}, nil)

	// A caller that sends without reading stalls once the backlog is full.
	n := 0
	for ; n < 1000; n++ {
		if err := s.Send(doneCtx(), []byte{byte(n)}); err != nil {
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("Send %d = %v, want context.Canceled once the backlog is full", n, err)
			}
			break
		}
	}
	if n == 0 || n == 1000 {
		t.Fatalf("%d Sends went through without a reader, want a bounded backlog", n)
	}
	wantRecv(t, s, sdk.Frame{Data: []byte{0}}, nil)
	if err := s.Send(doneCtx(), []byte{byte(n)}); err != nil {
		t.Fatalf("Send after one Recv made room = %v", err)
	}
	for i := 1; i <= n; i++ {
		wantRecv(t, s, sdk.Frame{Data: []byte{byte(i)}}, nil)
	}
}

func TestFarSideDeliversDisconnectsAndFails(t *testing.T) {
	tr := sdktest.New(sdktest.Config{})
	peerClosed := sdk.SessionEvent{Kind: sdk.EventPeerClosed, Code: 4, Detail: "peer closed"}

	t.Run("Disconnect", func(t *testing.T) {
		s := dial(t, tr, "a")
		if !s.Deliver([]byte("data")) || !s.Disconnect(peerClosed) {
			t.Fatal("Deliver or Disconnect on a live session reported false")
		}
		if s.Deliver([]byte("late")) || s.FailRecv(errors.New("late")) {
			t.Fatal("Deliver or FailRecv after Disconnect reported true")
		}
		// Echoed bytes after the far side left are lost, not queued.
		if err := s.Send(testCtx(t), []byte("lost")); err != nil {
			t.Fatalf("Send after Disconnect = %v", err)
		}
		wantRecv(t, s, sdk.Frame{Data: []byte("data")}, nil)
		wantRecv(t, s, sdk.Frame{Event: &peerClosed}, nil)
		wantRecv(t, s, sdk.Frame{}, io.EOF)
		wantRecv(t, s, sdk.Frame{}, io.EOF)
	})

	t.Run("FailRecv", func(t *testing.T) {
		s := dial(t, tr, "b")
		broken := &sdk.NetError{Op: "recv", Session: s.ID(), Kind: sdk.NetNoNetwork}
		s.Deliver([]byte("x"))
		s.FailRecv(broken)
		wantRecv(t, s, sdk.Frame{Data: []byte("x")}, nil)
		wantRecv(t, s, sdk.Frame{}, broken)
		if err := s.Close(testCtx(t)); err != nil {
			t.Fatal(err)
		}
		wantRecv(t, s, sdk.Frame{}, broken)
	})
}

func TestCloseUnblocksSendAndRecvAndReturnsItsResultEveryTime(t *testing.T) {
	ctx := testCtx(t)
	closeErr := &sdk.TimeoutError{Op: "close", After: time.Second}
	gateEntered := make(chan struct{})
	tr := sdktest.New(sdktest.Config{Dial: func(context.Context, *sdktest.Session) (sdktest.SessionConfig, error) {
		return sdktest.SessionConfig{
			Send: func(ctx context.Context, _ []byte) error {
				close(gateEntered)
				<-ctx.Done()
				return ctx.Err()
			},
			Close: func(context.Context) error { return closeErr },
		}, nil
	}})
	s := dial(t, tr, "gated")
	sendErr, recvErr := make(chan error, 1), make(chan error, 1)
	go func() { sendErr <- s.Send(ctx, []byte("blocked")) }()
	go func() {
		_, err := s.Recv(ctx)
		recvErr <- err
	}()
	<-gateEntered
	if err := s.Send(ctx, []byte("second")); !errors.Is(err, sdktest.ErrConcurrentSend) {
		t.Fatalf("Send during a Send = %v, want ErrConcurrentSend", err)
	}
	if err := s.Close(ctx); err != closeErr {
		t.Fatalf("Close = %v, want the hook's error", err)
	}
	for name, ch := range map[string]chan error{"Send": sendErr, "Recv": recvErr} {
		if err := <-ch; !errors.Is(err, sdk.ErrSessionClosed) {
			t.Errorf("blocked %s after Close = %v, want ErrSessionClosed", name, err)
		}
	}
	if err := s.Close(ctx); err != closeErr {
		t.Errorf("second Close = %v, want the first result again", err)
	}
	if err := s.Send(ctx, []byte("x")); !errors.Is(err, sdk.ErrSessionClosed) {
		t.Errorf("Send after Close = %v, want ErrSessionClosed", err)
	}
}

func TestStopEndsEverySessionWithEOF(t *testing.T) {
	ctx := testCtx(t)
	stops := 0
	tr := sdktest.New(sdktest.Config{Stop: func(context.Context) error { stops++; return nil }})
	a, b := dial(t, tr, "a"), dial(t, tr, "b")
	a.Deliver([]byte("discarded by Stop"))
	if err := tr.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	for _, s := range []*sdktest.Session{a, b} {
		wantRecv(t, s, sdk.Frame{}, io.EOF)
		if err := s.Send(ctx, []byte("x")); !errors.Is(err, sdk.ErrSessionClosed) {
			t.Errorf("Send on session %d after Stop = %v, want ErrSessionClosed", s.ID(), err)
		}
	}
	if err := tr.Stop(ctx); err != nil || stops != 2 {
		t.Fatalf("second Stop = %v after %d hook calls; want nil after 2", err, stops)
	}
	if c := dial(t, tr, "c"); c.ID() != 0 {
		t.Fatalf("Dial after Stop got id %d, want 0", c.ID())
	}
}

// TestConcurrentUse runs every method from many goroutines at once; the race
// detector is the judge.
func TestConcurrentUse(t *testing.T) {
	ctx := testCtx(t)
	tr := sdktest.New(sdktest.Config{MaxSessions: 8})
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 8 {
		wg.Go(func() {
			b := sdk.Bundle{Profile: i, CA: testPEM("CERTIFICATE", fmt.Sprint("ca ", i%2))}
			if _, err := tr.Provision(ctx, b); err != nil {
				errs <- err
			}
			if _, err := tr.ListCerts(ctx); err != nil {
				errs <- err
			}
			s, err := tr.Dial(ctx, sdk.DialRequest{Host: "echo"})
			if err != nil {
				errs <- err
				return
			}
			wg.Go(func() {
				if err := s.Send(ctx, []byte{byte(i)}); err != nil {
					errs <- err
				}
			})
			if f, err := s.Recv(ctx); err != nil || len(f.Data) != 1 || f.Data[0] != byte(i) {
				errs <- fmt.Errorf("session %d: Recv = %+v: %w", s.ID(), f, err)
			}
			if err := s.Close(ctx); err != nil {
				errs <- err
			}
		})
	}
	wg.Go(func() {
		if err := tr.Stop(ctx); err != nil {
			errs <- err
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		// Stop may end a session under a goroutine's feet; that is its job.
		if !errors.Is(err, sdk.ErrSessionClosed) && !errors.Is(err, io.EOF) {
			t.Error(err)
		}
	}
}

// TestServedAcrossThePluginBoundary serves a Transport from this test binary
// with sdk.Serve and drives it through sdk.Launch, as the agent would.
func TestServedAcrossThePluginBoundary(t *testing.T) {
	ctx := testCtx(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	p, err := sdk.Launch(ctx, sdk.LaunchConfig{
		Path: self,
		Env: []string{
			envRole + "=plugin",
			// The race detector's 1 s sleep at exit would slow the stop.
			strings.TrimSpace("GORACE=" + os.Getenv("GORACE") + " atexit_sleep_ms=0"),
		},
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatalf("Launch: %v", err)
	}
	t.Cleanup(func() {
		if err := p.Kill(context.Background()); err != nil {
			t.Errorf("Kill: %v", err)
		}
	})
	tr := p.Transport()

	if info, err := tr.Open(ctx, sdk.ModemConfig{Model: "double"}); err != nil || info != sdktest.DefaultInfo() {
		t.Fatalf("Open = %+v, %v; want DefaultInfo", info, err)
	}
	var mm *sdk.ModelMismatchError
	if _, err := tr.Open(ctx, sdk.ModemConfig{Model: "sim7600"}); !errors.As(err, &mm) {
		t.Fatalf("Open of another model = %v, want a ModelMismatchError across the boundary", err)
	}
	rep, err := tr.Provision(ctx, sdk.Bundle{CA: testPEM("CERTIFICATE", "ca")})
	if err != nil || len(rep.Downloaded) != 1 {
		t.Fatalf("Provision = %+v, %v; want one download", rep, err)
	}
	if names, err := tr.ListCerts(ctx); err != nil || !reflect.DeepEqual(names, rep.Downloaded) {
		t.Fatalf("ListCerts = %v, %v; want %v", names, err, rep.Downloaded)
	}

	echo, err := tr.Dial(ctx, sdk.DialRequest{Host: "echo"})
	if err != nil {
		t.Fatal(err)
	}
	if err := echo.Send(ctx, []byte("ping")); err != nil {
		t.Fatal(err)
	}
	wantRecv(t, echo, sdk.Frame{Data: []byte("ping")}, nil)

	events, err := tr.Dial(ctx, sdk.DialRequest{Host: "events"})
	if err != nil {
		t.Fatal(err)
	}
	wantRecv(t, events, sdk.Frame{Data: []byte("hello")}, nil)
	wantRecv(t, events, sdk.Frame{Event: &sdk.SessionEvent{Kind: sdk.EventPeerClosed, Detail: "peer closed"}}, nil)
	wantRecv(t, events, sdk.Frame{}, io.EOF)

	if err := tr.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	wantRecv(t, echo, sdk.Frame{}, io.EOF)
	for _, s := range []sdk.Session{echo, events} {
		if err := s.Close(ctx); err != nil {
			t.Errorf("Close of session %d after Stop: %v", s.ID(), err)
		}
	}
}
