package simcom

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"go.bug.st/serial"
)

// defaultWriteTimeout bounds one write to the serial line. At 9600 baud a
// 2048-byte CCHSEND payload takes about 2.1 s, so anything much shorter would
// fail healthy slow links; a modem that has not drained its input buffer for
// this long is wedged.
const defaultWriteTimeout = 30 * time.Second

// port wraps a go.bug.st/serial port so that writes honour a deadline.
// go.bug.st/serial has no write timeout: on a pty, or a USB CDC port whose
// modem stopped reading, a write blocks forever once the kernel buffer is
// full. Reads need no wrapper: with no read timeout they block in select(2)
// until data arrives or Close wakes them.
type port struct {
	name         string
	sp           serial.Port
	writeTimeout time.Duration

	// writeMu serialises writers; the at.Channel already writes from one
	// command at a time, but Close may race a stuck write.
	writeMu sync.Mutex

	closeOnce sync.Once
	closeErr  error
	closed    chan struct{}
}

// openPort opens name at baud with 8N1 framing. The returned port's Close
// unblocks pending reads and abandons a write that is stuck in the kernel.
func openPort(name string, baud int) (*port, error) {
	if baud <= 0 {
		baud = 115200
	}
	sp, err := serial.Open(name, &serial.Mode{BaudRate: baud, DataBits: 8, Parity: serial.NoParity, StopBits: serial.OneStopBit})
	if err != nil {
		return nil, fmt.Errorf("open serial port %s at %d baud: %w", name, baud, err)
	}
	if err := sp.SetReadTimeout(serial.NoTimeout); err != nil {
		sp.Close()
		return nil, fmt.Errorf("serial port %s: set read timeout: %w", name, err)
	}
	return &port{name: name, sp: sp, writeTimeout: defaultWriteTimeout, closed: make(chan struct{})}, nil
}

// Read reads from the line. It returns io.EOF once the port was closed, so
// the AT channel's reader ends cleanly instead of reporting a port error.
func (p *port) Read(b []byte) (int, error) {
	n, err := p.sp.Read(b)
	if err != nil {
		select {
		case <-p.closed:
			return n, io.EOF
		default:
		}
		return n, fmt.Errorf("read %s: %w", p.name, err)
	}
	if n == 0 {
		// With NoTimeout a zero read means the descriptor hung up (a USB
		// modem unplugged, or the pty master went away).
		return 0, fmt.Errorf("read %s: %w", p.name, io.ErrUnexpectedEOF)
	}
	return n, nil
}

// Write writes all of b or fails after writeTimeout. A write that timed out
// may still complete later in the background; the port is then closed,
// because the modem's view of the byte stream is unknown.
func (p *port) Write(b []byte) (int, error) {
	p.writeMu.Lock()
	defer p.writeMu.Unlock()
	type result struct {
		n   int
		err error
	}
	done := make(chan result, 1)
	go func() {
		n, err := writeAll(p.sp, b)
		done <- result{n, err}
	}()
	timer := time.NewTimer(p.writeTimeout)
	defer timer.Stop()
	select {
	case r := <-done:
		if r.err != nil {
			return r.n, fmt.Errorf("write %s: %w", p.name, r.err)
		}
		return r.n, nil
	case <-timer.C:
		p.Close()
		return 0, fmt.Errorf("write %s: %d bytes not accepted within %s; port closed", p.name, len(b), p.writeTimeout)
	case <-p.closed:
		return 0, fmt.Errorf("write %s: %w", p.name, errPortClosed)
	}
}

var errPortClosed = errors.New("port closed")

func writeAll(w io.Writer, b []byte) (int, error) {
	total := 0
	for total < len(b) {
		n, err := w.Write(b[total:])
		total += n
		if err != nil {
			return total, err
		}
		if n == 0 {
			return total, io.ErrShortWrite
		}
	}
	return total, nil
}

// Close closes the port once; later calls return the first result.
func (p *port) Close() error {
	p.closeOnce.Do(func() {
		close(p.closed)
		p.closeErr = p.sp.Close()
	})
	return p.closeErr
}
