package input

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cellgate/cellgate/agent/reading"
)

// Datagram limits.
const (
	// maxDatagram is the largest datagram read whole. A UDP payload cannot
	// be larger; a bigger Unix datagram arrives cut, is detected as such and
	// dropped.
	maxDatagram = 64 << 10
	// socketBuffer is the receive buffer asked for (the kernel caps it at
	// net.core.rmem_max): room for bursts while an append is syncing.
	socketBuffer = 4 << 20
	// queuedDatagrams bounds the parsed datagrams waiting for the appender;
	// past it the reader waits and the kernel buffer absorbs (or drops)
	// what arrives.
	queuedDatagrams = 256
	// maxCoalesce bounds the readings of several datagrams appended as one
	// batch.
	maxCoalesce = 2000
	// flushTimeout bounds the appends of readings received before
	// shutdown, counted from when reading stops.
	flushTimeout = 10 * time.Second
)

// Datagram is the UDP or Unix datagram ingest. Each datagram holds one or
// more readings, one JSON document per line (an object, or an array of
// objects), lines separated by "\n" (a trailing "\r" and blank lines are
// ignored).
//
// There is no reply channel, so the rules differ from HTTP: each line stands
// alone. A bad line is logged at WARN with the sender, line number and
// reason (at most 10 such lines per 10 s; the rest are counted as
// suppressed) and counted in Stats.Rejected; the datagram's good lines are
// still stored. A datagram too large to read whole is dropped the same way.
// Readings are appended in the order their datagrams arrived; readings that
// arrive while an append is in progress are appended together in the next
// one. When the sink fails, the readings are lost: they are logged and
// counted in Stats.Rejected under the sink's reason. Senders that need to
// know their readings are stored use the HTTP ingest.
type Datagram struct {
	conn   net.PacketConn
	unix   string // socket path, removed by Close; "" for UDP
	sink   Sink
	log    *slog.Logger
	now    func() time.Time
	stats  counters
	badLog *logLimiter
	errLog *logLimiter

	closeOnce sync.Once
	closeErr  error
}

// NewDatagram binds the datagram ingest. listen is "udp:HOST:PORT",
// "HOST:PORT" (UDP too) or "unix:PATH". For a Unix socket a stale socket
// file left by a dead process is replaced; a live socket, or a file that is
// not a socket, is an error. Its log lines carry input=udp or
// input=unixgram, added here. log nil means slog.Default(); now nil means
// time.Now. The caller must call Serve or Close.
func NewDatagram(listen string, sink Sink, log *slog.Logger, now func() time.Time) (*Datagram, error) {
	if log == nil {
		log = slog.Default()
	}
	if now == nil {
		now = time.Now
	}
	d := &Datagram{sink: sink, now: now, badLog: newLogLimiter(), errLog: newLogLimiter()}
	switch {
	case strings.HasPrefix(listen, "unix:"):
		path := strings.TrimPrefix(listen, "unix:")
		if path == "" {
			return nil, fmt.Errorf("datagram input: %q names no socket path (want unix:/run/cellgate.sock)", listen)
		}
		if err := removeStaleSocket(path); err != nil {
			return nil, fmt.Errorf("datagram input: %w", err)
		}
		conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
		if err != nil {
			return nil, fmt.Errorf("datagram input: listen on unix socket %s: %w", path, err)
		}
		d.conn, d.unix = conn, path
		d.log = log.With("input", "unixgram")
	default:
		hostport := strings.TrimPrefix(listen, "udp:")
		if _, _, err := net.SplitHostPort(hostport); err != nil {
			return nil, fmt.Errorf("datagram input: %q is not udp:HOST:PORT, HOST:PORT or unix:PATH: %w", listen, err)
		}
		addr, err := net.ResolveUDPAddr("udp", hostport)
		if err != nil {
			return nil, fmt.Errorf("datagram input: resolve %q: %w", hostport, err)
		}
		conn, err := net.ListenUDP("udp", addr)
		if err != nil {
			return nil, fmt.Errorf("datagram input: listen on udp %s: %w", hostport, err)
		}
		d.conn = conn
		d.log = log.With("input", "udp")
	}
	if rb, ok := d.conn.(interface{ SetReadBuffer(int) error }); ok {
		if err := rb.SetReadBuffer(socketBuffer); err != nil {
			d.log.Debug("could not enlarge the socket receive buffer", "bytes", socketBuffer, "err", err)
		}
	}
	return d, nil
}

// removeStaleSocket deletes path if it is a socket nobody listens on.
func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("check %s: %w", path, err)
	}
	if fi.Mode()&fs.ModeSocket == 0 {
		return fmt.Errorf("%s exists and is not a socket; not replacing it", path)
	}
	c, err := net.Dial("unixgram", path)
	if err == nil {
		c.Close()
		return fmt.Errorf("%s is in use by another process", path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("check whether %s is in use: %w", path, err)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("remove stale socket %s: %w", path, err)
	}
	return nil
}

// Addr returns the bound address (useful after binding port 0).
func (d *Datagram) Addr() net.Addr { return d.conn.LocalAddr() }

// Stats returns the ingest's counters: readings accepted, and readings
// refused by reason (bad lines, oversized datagrams, readings the sink
// refused).
func (d *Datagram) Stats() Stats { return d.stats.snapshot() }

// Close closes the socket and removes a Unix socket's file. Serve calls it
// when it returns; calling it again is harmless.
func (d *Datagram) Close() error {
	d.closeOnce.Do(func() {
		// Serve closes the socket early to stop its read; that is not
		// an error here.
		if err := d.conn.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			d.closeErr = fmt.Errorf("datagram input: close %s: %w", d.Addr(), err)
		}
		if d.unix != "" {
			if err := os.Remove(d.unix); err != nil && !errors.Is(err, fs.ErrNotExist) && d.closeErr == nil {
				d.closeErr = fmt.Errorf("datagram input: remove socket %s: %w", d.unix, err)
			}
		}
	})
	return d.closeErr
}

// parsedDatagram is what the reader hands the appender.
type parsedDatagram struct {
	from     string
	payloads [][]byte
}

// Serve reads datagrams until ctx ends, then appends what was already
// received (for up to 10 s), closes the socket and returns nil. It returns
// an error if reading from the socket fails for another reason.
func (d *Datagram) Serve(ctx context.Context) error {
	defer d.Close()
	stop := context.AfterFunc(ctx, func() { d.conn.Close() })
	defer stop()
	d.log.Info("datagram input listening", "addr", d.Addr().String())

	// Appends outlive ctx so that readings already received are stored;
	// flushCtx ends flushTimeout after reading stops, bounding shutdown.
	flushCtx, cancelFlush := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelFlush()
	queue := make(chan parsedDatagram, queuedDatagrams)
	appended := make(chan struct{})
	go func() {
		defer close(appended)
		d.appendLoop(flushCtx, queue)
	}()

	buf := make([]byte, maxDatagram)
	var readErr error
	for {
		n, from, truncated, err := d.read(buf)
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, net.ErrClosed) {
				readErr = fmt.Errorf("datagram input on %s: read: %w", d.Addr(), err)
			}
			break
		}
		if truncated {
			d.stats.reject(ReasonTooLarge, 1)
			d.badLog.log(ctx, d.log, slog.LevelWarn, "datagram dropped: larger than the limit", "from", from, "limit", maxDatagram)
			continue
		}
		if p := d.parse(ctx, buf[:n], from); len(p.payloads) > 0 {
			// Blocking here, rather than dropping, keeps order and lets
			// the socket buffer absorb bursts while the spool syncs.
			queue <- p
		}
	}
	flushDeadline := time.AfterFunc(flushTimeout, cancelFlush)
	defer flushDeadline.Stop()
	close(queue)
	<-appended
	d.log.Info("datagram input stopped", "addr", d.Addr().String())
	return readErr
}

// read reads one datagram and reports whether the kernel had to cut it.
func (d *Datagram) read(buf []byte) (int, string, bool, error) {
	switch c := d.conn.(type) {
	case *net.UDPConn:
		n, _, flags, addr, err := c.ReadMsgUDP(buf, nil)
		from := "(unknown)"
		if addr != nil {
			from = addr.String()
		}
		return n, from, flags&syscall.MSG_TRUNC != 0, err
	case *net.UnixConn:
		n, _, flags, addr, err := c.ReadMsgUnix(buf, nil)
		// An unbound Unix datagram client has no address.
		from := "(unnamed)"
		if addr != nil && addr.Name != "" {
			from = addr.Name
		}
		return n, from, flags&syscall.MSG_TRUNC != 0, err
	}
	return 0, "", false, fmt.Errorf("unexpected connection type %T", d.conn)
}

// parse turns a datagram's lines into payloads, logging and counting the
// bad ones.
func (d *Datagram) parse(ctx context.Context, data []byte, from string) parsedDatagram {
	p := parsedDatagram{from: from}
	now := d.now()
	for lineNo := 1; len(data) > 0; lineNo++ {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		rs, err := reading.Parse(line, now, reading.Limits{})
		if err == nil {
			var payloads [][]byte
			if payloads, err = marshalReadings(rs); err == nil {
				p.payloads = append(p.payloads, payloads...)
				continue
			}
		}
		d.stats.reject(ReasonBadReading, readingsRefused(err, 0))
		d.badLog.log(ctx, d.log, slog.LevelWarn, "bad reading line dropped", "from", from, "line", lineNo, "err", err)
	}
	return p
}

// appendLoop appends queued readings in arrival order, coalescing what
// queued up during the previous append into one batch. ctx bounds every
// append; each also gets appendTimeout.
func (d *Datagram) appendLoop(ctx context.Context, queue <-chan parsedDatagram) {
	for first := range queue {
		batch := first.payloads
		senders := 1
	drain:
		for len(batch) < maxCoalesce {
			select {
			case p, ok := <-queue:
				if !ok {
					break drain
				}
				batch = append(batch, p.payloads...)
				senders++
			default:
				break drain
			}
		}
		actx, cancel := context.WithTimeout(ctx, appendTimeout)
		_, err := d.sink.Append(actx, batch...)
		cancel()
		if err != nil {
			d.stats.reject(sinkReason(err), len(batch))
			d.errLog.log(ctx, d.log, slog.LevelWarn, "readings lost: the spool refused them", "readings", len(batch), "datagrams", senders, "err", err)
			continue
		}
		d.stats.accepted.Add(uint64(len(batch)))
	}
}
