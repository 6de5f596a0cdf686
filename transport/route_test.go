package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"strings"
	"testing"

	"github.com/cellgate/cellgate/sdk"
)

// configs/cellgate.yaml: "empty in host mode means the system's roots".
func TestHostTLSWithoutCAUsesTheSystemRoots(t *testing.T) {
	c, err := HostTLSConfig(sdk.Bundle{}, "broker.example.com")
	if err != nil {
		t.Fatalf("HostTLSConfig with no CA: %v", err)
	}
	if c.RootCAs != nil || c.InsecureSkipVerify {
		t.Fatalf("RootCAs = %v, InsecureSkipVerify = %v; want the system roots (nil) and verification on", c.RootCAs, c.InsecureSkipVerify)
	}
	if c.ServerName != "broker.example.com" {
		t.Errorf("ServerName = %q", c.ServerName)
	}
}

// The one TLS policy: both `cellgate run` and `cellgate modem dial` get TLS
// 1.3 at least in host mode.
func TestHostTLSIsTLS13(t *testing.T) {
	c, err := HostTLSConfig(sdk.Bundle{Insecure: true}, "x")
	if err != nil {
		t.Fatal(err)
	}
	if c.MinVersion != tls.VersionTLS13 {
		t.Fatalf("MinVersion = %#x, want TLS 1.3", c.MinVersion)
	}
}

func TestHostTLSNamesTheBadCredential(t *testing.T) {
	for _, tc := range []struct {
		name  string
		b     sdk.Bundle
		field string
	}{
		{"CA without a certificate", sdk.Bundle{CA: []byte("junk")}, "ca"},
		{"key without certificate", sdk.Bundle{Insecure: true, Key: []byte("junk")}, "cert/key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := HostTLSConfig(tc.b, "x")
			var ce *CredentialError
			if !errors.As(err, &ce) || ce.Field != tc.field {
				t.Fatalf("err = %v, want a *CredentialError for %q", err, tc.field)
			}
		})
	}
}

// configs/cellgate.yaml: tls.sni is "the server name to send (SNI) and to
// verify the certificate against", in either mode.
func TestModemDialRequestSendsTheConfiguredSNI(t *testing.T) {
	for _, tc := range []struct {
		name, host, sni, want string
	}{
		{"sni set", "10.0.0.7", "broker.example.com", "broker.example.com"},
		{"sni empty, DNS host", "broker.example.com", "", "broker.example.com"},
		{"sni empty, IP host", "10.0.0.7", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := ModemDialRequest(tc.host, 8883, 0, tc.sni)
			if req.ServerName != tc.want || req.Host != tc.host || req.Port != 8883 || req.Mode != sdk.DialModemTLS {
				t.Fatalf("ModemDialRequest(%q, 8883, 0, %q) = %+v, want ServerName %q", tc.host, tc.sni, req, tc.want)
			}
		})
	}
}

// recordingDialer is a test double, not a modem: it records the requests
// and refuses them, which is all NewRoute's dialers need to show.
type recordingDialer struct{ reqs []sdk.DialRequest }

var errRefused = errors.New("refused by the test dialer")

func (d *recordingDialer) Dial(_ context.Context, req sdk.DialRequest) (sdk.Session, error) {
	d.reqs = append(d.reqs, req)
	return nil, errRefused
}

func TestRouteDialsTheModeItWasGiven(t *testing.T) {
	for _, tc := range []struct {
		mode      TLSMode
		wantMode  sdk.DialMode
		wantPlain bool
	}{
		{TLSByModem, sdk.DialModemTLS, false},
		{TLSByHost, sdk.DialPlainTCP, true},
	} {
		t.Run(string(tc.mode), func(t *testing.T) {
			d := &recordingDialer{}
			r, err := NewRoute(d, Endpoint{Address: "broker.example.com:8883", Mode: tc.mode, Credentials: sdk.Bundle{Insecure: true}})
			if err != nil {
				t.Fatal(err)
			}
			if (r.Plain != nil) != tc.wantPlain || (r.HostTLS != nil) != tc.wantPlain {
				t.Fatalf("Plain set %t, HostTLS set %t; want both %t", r.Plain != nil, r.HostTLS != nil, tc.wantPlain)
			}
			if _, err := r.Dial(t.Context()); !errors.Is(err, errRefused) {
				t.Fatalf("Dial: %v, want the dialer's error", err)
			}
			if len(d.reqs) != 1 || d.reqs[0].Mode != tc.wantMode || d.reqs[0].Host != "broker.example.com" || d.reqs[0].Port != 8883 {
				t.Fatalf("requests %+v", d.reqs)
			}
		})
	}
}

func TestRouteRefusesBadEndpoints(t *testing.T) {
	for _, tc := range []struct {
		name string
		ep   Endpoint
		want string
	}{
		{"no port", Endpoint{Address: "broker.example.com", Mode: TLSByModem}, "missing port"},
		{"port zero", Endpoint{Address: "broker.example.com:0", Mode: TLSByModem}, "port must be 1-65535"},
		{"no host", Endpoint{Address: ":8883", Mode: TLSByModem}, "no host"},
		{"unknown mode", Endpoint{Address: "b:1", Mode: "both"}, `TLS mode "both": want modem or host`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewRoute(&recordingDialer{}, tc.ep)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to say %q", err, tc.want)
			}
		})
	}
}
