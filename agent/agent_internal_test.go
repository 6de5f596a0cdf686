package agent

import (
	"testing"

	"github.com/cellgate/cellgate/agent/config"
)

// configs/cellgate.yaml: "empty in host mode means the system's roots".
func TestHostTLSWithoutCAUsesTheSystemRoots(t *testing.T) {
	c, err := hostTLS(config.TLS{Mode: config.TLSModeHost}, "broker.example.com")
	if err != nil {
		t.Fatalf("hostTLS with an empty tls.ca: %v", err)
	}
	if c.RootCAs != nil || c.InsecureSkipVerify {
		t.Fatalf("RootCAs = %v, InsecureSkipVerify = %v; want the system roots (nil) and verification on", c.RootCAs, c.InsecureSkipVerify)
	}
	if c.ServerName != "broker.example.com" {
		t.Errorf("ServerName = %q", c.ServerName)
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
			req := modemDialRequest(tc.host, 8883, tc.sni)
			if req.ServerName != tc.want || req.Host != tc.host || req.Port != 8883 {
				t.Fatalf("modemDialRequest(%q, 8883, %q) = %+v, want ServerName %q", tc.host, tc.sni, req, tc.want)
			}
		})
	}
}
