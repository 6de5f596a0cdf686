package conformance

import (
	"crypto/tls"
	"fmt"
	"net"
	"strconv"
	"sync"
)

// Server is a real TCP (usually TLS) server that a modem session can
// reach. Close stops it.
type Server struct {
	Addr string // host:port it listens on
	Port int

	ln    net.Listener
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns map[net.Conn]struct{}
	// accepted receives connections that completed the TLS handshake (or
	// were accepted, for plain servers), as far as its buffer allows.
	accepted chan net.Conn
}

// Handler serves one accepted connection; the server closes it afterwards.
type Handler func(c net.Conn)

// CloseRequest is what a client sends first on a connection to an Echo
// server to have the server, once it echoed it, send CloseReply and close
// the connection: how the peer-close check stages a server that hangs up,
// on a server of ours or on a remote `cellgate plugin echo-server`.
const (
	CloseRequest = "cellgate-verify: close\n"
	CloseReply   = "bye\n"
)

// Echo copies everything back as it arrives. When the first bytes of the
// connection are CloseRequest, it echoes them (and nothing after them),
// sends CloseReply and returns, so the server closes the connection.
func Echo(c net.Conn) {
	buf := make([]byte, 32<<10)
	matched := 0 // how many first bytes of the stream match CloseRequest
	for {
		n, err := c.Read(buf)
		if n > 0 {
			before := matched
			if matched = matchPrefix(matched, buf[:n]); matched == len(CloseRequest) {
				// What follows the request is not echoed.
				c.Write(buf[:len(CloseRequest)-before])
				c.Write([]byte(CloseReply))
				return
			}
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// matchPrefix extends matched, the length of the stream's start that
// equals CloseRequest's start, with p: len(CloseRequest) once the whole
// request arrived (whatever follows it in p), -1 once the start differs.
func matchPrefix(matched int, p []byte) int {
	for _, b := range p {
		if matched < 0 || matched == len(CloseRequest) {
			break
		}
		if b != CloseRequest[matched] {
			return -1
		}
		matched++
	}
	return matched
}

// StartServer listens on 127.0.0.1:0 and serves each connection with h in
// its own goroutine; see Listen.
func StartServer(cfg *tls.Config, h Handler) (*Server, error) {
	return Listen("127.0.0.1:0", cfg, h)
}

// Listen listens on addr and serves each connection with h in its own
// goroutine. With cfg non-nil the connections are TLS and h runs only after
// a successful handshake. The caller must Close the server.
func Listen(addr string, cfg *tls.Config, h Handler) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("conformance: listen on %s: %w", addr, err)
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
			go s.serve(c, cfg, h)
		}
	}()
	return s, nil
}

func (s *Server) serve(c net.Conn, cfg *tls.Config, h Handler) {
	defer s.wg.Done()
	raw := c
	defer func() { c.Close(); s.track(raw, false) }()
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

// Accepted returns the connections that completed the handshake, the
// first 16 of them, for a check of what the server saw.
func (s *Server) Accepted() <-chan net.Conn { return s.accepted }

// Close stops the listener, closes every connection and waits for the
// handlers to return. It is safe to call more than once.
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
