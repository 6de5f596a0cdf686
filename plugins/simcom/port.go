package simcom

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"go.bug.st/serial"
	"golang.org/x/sys/unix"
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
	lock         *os.File // holds the flock that keeps other drivers off the port
	writeTimeout time.Duration

	// writeMu serialises writers; the at.Channel already writes from one
	// command at a time, but Close may race a stuck write.
	writeMu sync.Mutex

	closeOnce sync.Once
	closeErr  error
	closed    chan struct{}
}

// lockWait bounds the wait for another process to let go of the port. A
// plugin whose agent died stops the modem (closing its sessions) for up to
// ten seconds before it exits; its successor waits for that.
const lockWait = 20 * time.Second

// openPort opens name at baud with 8N1 framing. The returned port's Close
// unblocks pending reads and abandons a write that is stuck in the kernel.
//
// Before touching the line it takes an exclusive flock on the device.
// go.bug.st/serial's TIOCEXCL keeps other processes out, but not root's: two
// drivers on one modem interleave commands and steal each other's answers.
// The lock is released when the port is closed or the process dies.
func openPort(ctx context.Context, name string, baud int) (*port, error) {
	if baud <= 0 {
		baud = 115200
	}
	lock, err := lockDevice(ctx, name)
	if err != nil {
		return nil, err
	}
	sp, err := serial.Open(name, &serial.Mode{BaudRate: baud, DataBits: 8, Parity: serial.NoParity, StopBits: serial.OneStopBit})
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("open serial port %s at %d baud: %w", name, baud, err)
	}
	// Bytes the modem sent to a previous owner of the port (a plugin that
	// died) are answers to commands we never sent.
	if err := sp.ResetInputBuffer(); err != nil {
		sp.Close()
		lock.Close()
		return nil, fmt.Errorf("serial port %s: discard stale input: %w", name, err)
	}
	if err := sp.SetReadTimeout(serial.NoTimeout); err != nil {
		sp.Close()
		lock.Close()
		return nil, fmt.Errorf("serial port %s: set read timeout: %w", name, err)
	}
	return &port{name: name, sp: sp, lock: lock, writeTimeout: defaultWriteTimeout, closed: make(chan struct{})}, nil
}

// lockDevice takes an exclusive flock on the device node, waiting while
// another process holds it, up to lockWait or ctx.
func lockDevice(ctx context.Context, name string) (*os.File, error) {
	f, err := os.OpenFile(name, os.O_RDWR|unix.O_NOCTTY|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("open serial port %s: %w", name, err)
	}
	deadline := time.Now().Add(lockWait)
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock serial port %s: %w", name, err)
		}
		if time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("serial port %s is in use by another process (still locked after %s)", name, lockWait)
		}
		t := time.NewTimer(100 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			f.Close()
			return nil, fmt.Errorf("waiting for serial port %s held by another process: %w", name, ctx.Err())
		case <-t.C:
		}
	}
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
		p.lock.Close()
	})
	return p.closeErr
}
