// Package relay is a byte-counting TCP relay: it listens on 127.0.0.1,
// dials one upstream address for every connection it accepts and copies
// both ways, counting the bytes. Put between the emulated modem's sockets
// and a broker it measures what a gateway sends and receives over the air
// (TLS records both ways, the handshake included) from outside the
// project's own code.
package relay

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Counts are the bytes a relay carried: Up from the clients to the
// upstream, Down back; UpReads and DownReads the reads that carried them
// (a small record such as a keep-alive ping arrives in one); Conns is the
// connections accepted so far.
type Counts struct {
	Up, Down           int64
	UpReads, DownReads int64
	Conns              int64
}

// Total is Up plus Down.
func (c Counts) Total() int64 { return c.Up + c.Down }

// Sub returns c minus an earlier snapshot.
func (c Counts) Sub(earlier Counts) Counts {
	return Counts{Up: c.Up - earlier.Up, Down: c.Down - earlier.Down,
		UpReads: c.UpReads - earlier.UpReads, DownReads: c.DownReads - earlier.DownReads, Conns: c.Conns - earlier.Conns}
}

// Relay forwards connections to one upstream address and counts bytes.
type Relay struct {
	ln       net.Listener
	upstream string
	up, down atomic.Int64
	upR, dnR atomic.Int64
	conns    atomic.Int64
	last     atomic.Int64 // unix nanoseconds of the last byte carried
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	mu       sync.Mutex
	open     map[net.Conn]struct{}
}

// Start listens on a free loopback port and relays to upstream
// (host:port).
func Start(upstream string) (*Relay, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("relay to %s: %w", upstream, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Relay{ln: ln, upstream: upstream, ctx: ctx, cancel: cancel, open: map[net.Conn]struct{}{}}
	r.wg.Add(1)
	go r.accept()
	return r, nil
}

// Addr is the address clients dial (127.0.0.1:port).
func (r *Relay) Addr() string { return r.ln.Addr().String() }

// Counts returns the bytes carried so far.
func (r *Relay) Counts() Counts {
	return Counts{Up: r.up.Load(), Down: r.down.Load(), UpReads: r.upR.Load(), DownReads: r.dnR.Load(), Conns: r.conns.Load()}
}

// Quiet reports whether no byte went either way for d.
func (r *Relay) Quiet(d time.Duration) bool {
	return time.Since(time.Unix(0, r.last.Load())) >= d
}

// DropAll closes every open connection, as a lost radio link would; the
// listener keeps accepting.
func (r *Relay) DropAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for c := range r.open {
		c.Close()
	}
}

// Close stops listening, closes every connection and waits for the copies
// to end.
func (r *Relay) Close() error {
	r.cancel()
	err := r.ln.Close()
	r.DropAll()
	r.wg.Wait()
	return err
}

func (r *Relay) accept() {
	defer r.wg.Done()
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		r.conns.Add(1)
		r.wg.Add(1)
		go r.serve(c)
	}
}

func (r *Relay) track(c net.Conn, on bool) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if on {
		if r.ctx.Err() != nil {
			return false
		}
		r.open[c] = struct{}{}
	} else {
		delete(r.open, c)
	}
	return true
}

func (r *Relay) serve(c net.Conn) {
	defer r.wg.Done()
	defer c.Close()
	d := net.Dialer{Timeout: 10 * time.Second}
	u, err := d.DialContext(r.ctx, "tcp", r.upstream)
	if err != nil {
		return
	}
	defer u.Close()
	if !r.track(c, true) || !r.track(u, true) {
		return
	}
	defer r.track(c, false)
	defer r.track(u, false)
	done := make(chan struct{}, 2)
	go r.copy(u, c, &r.up, &r.upR, done)
	go r.copy(c, u, &r.down, &r.dnR, done)
	<-done
	// One side ended: end the other, as a NAT dropping the flow would.
	c.Close()
	u.Close()
	<-done
}

func (r *Relay) copy(dst, src net.Conn, n, reads *atomic.Int64, done chan<- struct{}) {
	defer func() { done <- struct{}{} }()
	buf := make([]byte, 32<<10)
	for {
		k, err := src.Read(buf)
		if k > 0 {
			n.Add(int64(k))
			reads.Add(1)
			r.last.Store(time.Now().UnixNano())
			if _, werr := dst.Write(buf[:k]); werr != nil {
				return
			}
		}
		if err != nil {
			return // EOF, a reset or a closed side all end the flow
		}
	}
}
