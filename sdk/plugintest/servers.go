package plugintest

import (
	"crypto/tls"
	"io"
	"net"
	"strconv"
	"sync"
	"testing"
)

// Server is a real TCP (and usually TLS) server on 127.0.0.1 that a modem
// session can reach. It is closed by t.Cleanup.
type Server struct {
	Addr string // 127.0.0.1:port
	Port int

	ln    net.Listener
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns map[net.Conn]struct{}
	// accepted counts connections that completed the TLS handshake (or
	// were accepted, for plain servers).
	accepted chan net.Conn
}

// Handler serves one accepted connection; the server closes it afterwards.
type Handler func(c net.Conn)

// Echo copies everything back.
func Echo(c net.Conn) { io.Copy(c, c) }

// StartServer listens on 127.0.0.1:0 and serves each connection with h in
// its own goroutine. With cfg non-nil the connections are TLS and h runs
// only after a successful handshake.
func StartServer(t testing.TB, cfg *tls.Config, h Handler) *Server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("plugintest: listen: %v", err)
	}
	s := &Server{Addr: ln.Addr().String(), Port: ln.Addr().(*net.TCPAddr).Port, ln: ln, conns: map[net.Conn]struct{}{}, accepted: make(chan net.Conn, 16)}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.track(c, true)
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer func() { c.Close(); s.track(c, false) }()
				if cfg != nil {
					tc := tls.Server(c, cfg)
					if err := tc.Handshake(); err != nil {
						return
					}
					c = tc
				}
				select {
				case s.accepted <- c:
				default:
				}
				h(c)
			}()
		}
	}()
	t.Cleanup(s.Close)
	return s
}

func (s *Server) track(c net.Conn, add bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if add {
		s.conns[c] = struct{}{}
	} else {
		delete(s.conns, c)
	}
}

// Close stops the listener, closes every connection and waits for the
// handlers.
func (s *Server) Close() {
	s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// HostPort splits Addr for a DialRequest.
func (s *Server) HostPort() (string, int) {
	host, port, _ := net.SplitHostPort(s.Addr)
	p, _ := strconv.Atoi(port)
	return host, p
}

// MutualTLS is a server config that presents the PKI's server identity and
// requires a client certificate signed by its CA, TLS 1.2 at most or any
// version (maxVersion 0).
func MutualTLS(p *PKI, maxVersion uint16) *tls.Config {
	cfg := p.dev.ServerTLS()
	cfg.MaxVersion = maxVersion
	return cfg
}
