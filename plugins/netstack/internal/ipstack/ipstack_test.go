package ipstack

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/cellgate/cellgate/sdk"
	"github.com/cellgate/cellgate/sdk/plugintest"
)

func newTransport(t *testing.T, port string) *Transport {
	t.Helper()
	tr := New(slog.New(slog.DiscardHandler))
	if _, err := tr.Open(ctxFor(t), sdk.ModemConfig{Model: Model, Port: port}); err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { tr.Stop(context.Background()) })
	return tr
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestOpenReadsPort(t *testing.T) {
	tests := []struct {
		name, port string
		wantKind   sdk.NetKind // NetOther: Open succeeds
	}{
		{"empty leaves the routing table to choose", "", sdk.NetOther},
		{"a device path is ignored", "/dev/null", sdk.NetOther},
		{"a local address is the source", "127.0.0.1", sdk.NetOther},
		{"an address not on this host", "192.0.2.1", sdk.NetNoNetwork},
		{"an interface that does not exist", "cgnosuch0", sdk.NetNoNetwork},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := New(slog.New(slog.DiscardHandler))
			_, err := tr.Open(ctxFor(t), sdk.ModemConfig{Model: Model, Port: tc.port})
			kind, isNet := sdk.NetKindOf(err)
			switch {
			case tc.wantKind == sdk.NetOther && err != nil:
				t.Fatalf("Open(%q) = %v, want success", tc.port, err)
			case tc.wantKind != sdk.NetOther && (!isNet || kind != tc.wantKind):
				t.Fatalf("Open(%q) = %v, want a NetError of kind %v", tc.port, err, tc.wantKind)
			}
		})
	}
}

func TestOpenRefusesOtherModel(t *testing.T) {
	_, err := New(slog.New(slog.DiscardHandler)).Open(ctxFor(t), sdk.ModemConfig{Model: "sim7600"})
	var mm *sdk.ModelMismatchError
	if !errors.As(err, &mm) {
		t.Fatalf("Open as sim7600 = %v, want *sdk.ModelMismatchError", err)
	}
}

func TestDialFailuresHaveNeutralKinds(t *testing.T) {
	tr := newTransport(t, "")
	refused := func() int { // a port nothing listens on
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return ln.Addr().(*net.TCPAddr).Port
	}()
	tests := []struct {
		name string
		req  sdk.DialRequest
		want sdk.NetKind
	}{
		{"name that does not resolve", sdk.DialRequest{Host: "cellgate-no-such-host.invalid", Port: 443, Mode: sdk.DialPlainTCP}, sdk.NetDNS},
		{"connection refused", sdk.DialRequest{Host: "127.0.0.1", Port: refused, Mode: sdk.DialPlainTCP}, sdk.NetConnect},
		{"no bundle for the profile", sdk.DialRequest{Host: "127.0.0.1", Port: refused, Profile: 3}, sdk.NetCertificate},
		{"port out of range", sdk.DialRequest{Host: "127.0.0.1", Port: 70000}, sdk.NetInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tr.Dial(ctxFor(t), tc.req)
			if kind, ok := sdk.NetKindOf(err); !ok || kind != tc.want {
				t.Fatalf("Dial = %v, want a NetError of kind %v", err, tc.want)
			}
		})
	}
}

func TestClientCertificateRefusedIsHandshake(t *testing.T) {
	tr := newTransport(t, "")
	pki, stranger := plugintest.NewPKI(t, plugintest.P256), plugintest.NewPKI(t, plugintest.P256)
	// The server trusts pki; the plugin presents stranger's client identity.
	if _, err := tr.Provision(ctxFor(t), sdk.Bundle{CA: pki.CA.CertPEM, Cert: stranger.Client.CertPEM, Key: stranger.Client.KeyPEM}); err != nil {
		t.Fatal(err)
	}
	srv := plugintest.StartServer(t, plugintest.MutualTLS(pki, 0), plugintest.Echo)
	host, port := srv.HostPort()
	sess, err := tr.Dial(ctxFor(t), sdk.DialRequest{Host: host, Port: port})
	if err == nil {
		// In TLS 1.3 the client finishes before the server checks its
		// certificate; the refusal arrives on the first read.
		sess.Send(ctxFor(t), []byte("x"))
		_, err = sess.Recv(ctxFor(t))
		if err == nil {
			_, err = sess.Recv(ctxFor(t))
		}
	}
	if err == nil {
		t.Fatal("a server that refuses our client certificate let the session through")
	}
}

func TestPlainTCPCarriesBinaryData(t *testing.T) {
	tr := newTransport(t, "127.0.0.1")
	srv := plugintest.StartServer(t, nil, plugintest.Echo)
	host, port := srv.HostPort()
	sess, err := tr.Dial(ctxFor(t), sdk.DialRequest{Host: host, Port: port, Mode: sdk.DialPlainTCP})
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 64<<10)
	rand.Read(data)
	sent := make(chan error, 1)
	go func() { sent <- sess.Send(ctxFor(t), data) }()
	var got []byte
	for len(got) < len(data) {
		f, err := sess.Recv(ctxFor(t))
		if err != nil || f.Event != nil {
			t.Fatalf("Recv after %d bytes = %+v, %v", len(got), f, err)
		}
		got = append(got, f.Data...)
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("64 KiB echoed back differ")
	}
}

func TestDeleteCertRefusesFilesInUse(t *testing.T) {
	tr := newTransport(t, "")
	pki := plugintest.NewPKI(t, plugintest.P256)
	r, err := tr.Provision(ctxFor(t), sdk.Bundle{CA: pki.CA.CertPEM})
	if err != nil {
		t.Fatal(err)
	}
	var me *sdk.ModemError
	if err := tr.DeleteCert(ctxFor(t), r.Downloaded[0]); !errors.As(err, &me) {
		t.Fatalf("DeleteCert of the profile's CA = %v, want *sdk.ModemError", err)
	}
	if err := tr.DeleteCert(ctxFor(t), "ca-000000000000.pem"); err != nil {
		t.Fatalf("DeleteCert of a name not stored = %v, want nil", err)
	}
	if names, _ := tr.ListCerts(ctxFor(t)); len(names) != 1 {
		t.Fatalf("ListCerts = %v, want the CA", names)
	}
}

func TestStopEndsSessions(t *testing.T) {
	tr := newTransport(t, "")
	srv := plugintest.StartServer(t, nil, plugintest.Echo)
	host, port := srv.HostPort()
	sess, err := tr.Dial(ctxFor(t), sdk.DialRequest{Host: host, Port: port, Mode: sdk.DialPlainTCP})
	if err != nil {
		t.Fatal(err)
	}
	recv := make(chan error, 1)
	go func() { _, err := sess.Recv(context.Background()); recv <- err }()
	if err := tr.Stop(ctxFor(t)); err != nil {
		t.Fatal(err)
	}
	if err := <-recv; !errors.Is(err, sdk.ErrSessionClosed) && !errors.Is(err, io.EOF) {
		t.Fatalf("Recv after Stop = %v, want the session closed", err)
	}
	if err := tr.Stop(ctxFor(t)); err != nil {
		t.Fatalf("second Stop = %v", err)
	}
}
