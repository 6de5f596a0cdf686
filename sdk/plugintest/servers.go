package plugintest

import (
	"crypto/tls"
	"net"
	"testing"

	"github.com/cellgate/cellgate/sdk/conformance"
)

// Server is a real TCP (and usually TLS) server on 127.0.0.1 that a modem
// session can reach (conformance.Server).
type Server = conformance.Server

// Handler serves one accepted connection; the server closes it afterwards.
type Handler = conformance.Handler

// Echo copies everything back (see conformance.Echo for the one request
// it honours).
func Echo(c net.Conn) { conformance.Echo(c) }

// StartServer listens on 127.0.0.1:0 and serves each connection with h in
// its own goroutine; t.Cleanup closes it. With cfg non-nil the connections
// are TLS and h runs only after a successful handshake.
func StartServer(t testing.TB, cfg *tls.Config, h Handler) *Server {
	t.Helper()
	s, err := conformance.StartServer(cfg, h)
	if err != nil {
		t.Fatalf("plugintest: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// MutualTLS is a server config that presents the PKI's server identity and
// requires a client certificate signed by its CA, TLS 1.2 at most or any
// version (maxVersion 0).
func MutualTLS(p *PKI, maxVersion uint16) *tls.Config { return conformance.MutualTLS(p.c, maxVersion) }
