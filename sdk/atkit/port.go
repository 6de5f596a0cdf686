package atkit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync"
	"time"

	"go.bug.st/serial"

	"github.com/cellgate/cellgate/sdk"
)

// Defaults of a PortConfig whose fields are zero.
const (
	// DefaultBaud is the line rate of a PortConfig without one.
	DefaultBaud = 115200
	// DefaultLockWait bounds the wait for another process to let go of the
	// port. A plugin whose agent died stops its modem (closing sessions)
	// for up to ten seconds before it exits; its successor waits for that.
	DefaultLockWait = 20 * time.Second
	// DefaultWriteTimeout bounds one write to the line. At 9600 baud a
	// 2048-byte payload takes about 2.1 s, so anything much shorter would
	// fail healthy slow links; a modem that has not drained its input for
	// this long is wedged.
	DefaultWriteTimeout = 30 * time.Second
)

// PortConfig says how OpenPort opens a device. The zero value is usable.
type PortConfig struct {
	// Baud is the line rate; zero or less means DefaultBaud. The framing
	// is always 8N1.
	Baud int
	// LockWait bounds the wait for another process that holds the device;
	// zero means DefaultLockWait.
	LockWait time.Duration
	// WriteTimeout bounds one Write; zero means DefaultWriteTimeout.
	WriteTimeout time.Duration
}

// Port is a serial port opened by OpenPort: an io.ReadWriteCloser for
// at.New whose writes honour a deadline and whose Close ends a pending Read.
//
// go.bug.st/serial has no write timeout: on a pty, or a USB CDC port whose
// modem stopped reading, a write blocks forever once the kernel buffer is
// full. So writes go through a second descriptor of the device, polled by
// the Go runtime, with a deadline. Reads need no wrapper: with no read
// timeout they block until data arrives or Close wakes them.
type Port struct {
	name         string
	sp           serial.Port
	lock         *os.File // holds the flock that keeps other drivers off the device; writes go through it
	writeTimeout time.Duration

	// writeMu serialises writers; an at.Channel writes from one goroutine,
	// but Close may race a stuck write.
	writeMu sync.Mutex

	closeOnce sync.Once
	closeErr  error
	closed    chan struct{}
}

// ErrPortClosed is returned by a Write on a Port that was closed.
var ErrPortClosed = errors.New("port closed")

// OpenPort opens the serial device name with 8N1 framing at cfg.Baud, and
// returns it once it is safe to use:
//
//   - It first takes an exclusive advisory flock on the device, waiting
//     while another process holds it, up to cfg.LockWait or until ctx ends;
//     then it fails with a *PortBusyError that names the holder when the
//     system tells (Linux's /proc/locks). go.bug.st/serial's TIOCEXCL keeps
//     other processes out, but not root's: two drivers on one modem
//     interleave commands and steal each other's answers. The lock is
//     released by Close, or when the process dies.
//   - It discards the input waiting on the line: bytes the modem sent to a
//     previous owner (a plugin that died) answer commands this one never
//     sent.
//
// ctx is waited on only while another process holds the device. The caller
// closes the Port (at.Channel.Close does, when the Port is its line). A port
// that cannot be opened or set up is an *sdk.SerialError naming it once.
func OpenPort(ctx context.Context, name string, cfg PortConfig) (*Port, error) {
	baud := cfg.Baud
	if baud <= 0 {
		baud = DefaultBaud
	}
	lock, err := lockDevice(ctx, name, orDefault(cfg.LockWait, DefaultLockWait))
	if err != nil {
		return nil, err
	}
	sp, err := serial.Open(name, &serial.Mode{BaudRate: baud, DataBits: 8, Parity: serial.NoParity, StopBits: serial.OneStopBit})
	if err != nil {
		lock.Close()
		return nil, openError(name, fmt.Sprintf("set up at %d baud", baud), err)
	}
	fail := func(what string, err error) (*Port, error) {
		sp.Close()
		lock.Close()
		return nil, openError(name, what, err)
	}
	if err := sp.ResetInputBuffer(); err != nil {
		return fail("discard stale input", err)
	}
	if err := sp.SetReadTimeout(serial.NoTimeout); err != nil {
		return fail("set read timeout", err)
	}
	return &Port{
		name:         name,
		sp:           sp,
		lock:         lock,
		writeTimeout: orDefault(cfg.WriteTimeout, DefaultWriteTimeout),
		closed:       make(chan struct{}),
	}, nil
}

// PortBusyError is a device that another process kept locked while
// OpenPort waited.
type PortBusyError struct {
	// Port is the device path.
	Port string
	// HolderPID and Holder are the process holding the lock and its
	// command name, when the system tells (0 and "" otherwise).
	HolderPID int
	Holder    string
	// Waited is how long OpenPort waited; Err is ctx's error when the
	// context ended the wait, nil when LockWait did.
	Waited time.Duration
	Err    error
}

func (e *PortBusyError) Error() string {
	who := "another process"
	switch {
	case e.HolderPID > 0 && e.Holder != "":
		who = fmt.Sprintf("another process (pid %d, %s)", e.HolderPID, e.Holder)
	case e.HolderPID > 0:
		who = fmt.Sprintf("another process (pid %d)", e.HolderPID)
	}
	if e.Err != nil {
		return fmt.Sprintf("waiting for serial port %s held by %s: %v", e.Port, who, e.Err)
	}
	return fmt.Sprintf("serial port %s is held by %s (still locked after %s)", e.Port, who, e.Waited.Round(time.Millisecond))
}

func (e *PortBusyError) Unwrap() error { return e.Err }

// openError is a port that could not be opened, as the contract's
// *sdk.SerialError: the port named once, then what failed in the system's
// words ("serial port /dev/ttyUSB2: open: no such file or directory"), not
// each layer repeating the path.
func openError(name, what string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) && pe.Path == name {
		err = pe.Err
	}
	msg := err.Error()
	if what != "" {
		msg = what + ": " + msg
	}
	return &sdk.SerialError{Op: "open", Port: name, Err: msg}
}

// lockDevice opens the device node and takes an exclusive flock on it,
// polling while another process holds it, up to wait or ctx.
func lockDevice(ctx context.Context, name string, wait time.Duration) (*os.File, error) {
	f, err := openNoCTTY(name)
	if err != nil {
		return nil, openError(name, "", err)
	}
	start := time.Now()
	for {
		held, err := tryLock(f)
		if err != nil {
			f.Close()
			return nil, openError(name, "lock", err)
		}
		if !held {
			return f, nil
		}
		busy := func(cause error) error {
			pid := lockHolder(f)
			f.Close()
			return &PortBusyError{Port: name, HolderPID: pid, Holder: processName(pid), Waited: time.Since(start), Err: cause}
		}
		if time.Since(start) >= wait {
			return nil, busy(nil)
		}
		t := time.NewTimer(100 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, busy(ctx.Err())
		case <-t.C:
		}
	}
}

// Name returns the device path.
func (p *Port) Name() string { return p.name }

// Read reads from the line. It returns io.EOF once the port was closed, so
// the AT channel's reader ends cleanly instead of reporting a port error, and
// io.ErrUnexpectedEOF (wrapped) when the device hung up (a USB modem
// unplugged, a pty whose other side went away).
func (p *Port) Read(b []byte) (int, error) {
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
		select {
		case <-p.closed:
			return 0, io.EOF
		default:
		}
		return 0, fmt.Errorf("read %s: %w", p.name, io.ErrUnexpectedEOF)
	}
	return n, nil
}

// Write writes all of b or fails after the write timeout; the port is then
// closed, because the modem's view of the byte stream is unknown.
//
// Where the system can poll the device (Linux, the BSDs), the bytes go
// through the locked descriptor with a write deadline, so no write outlives
// Close: a goroutine still writing after Close would write through a file
// descriptor number the process may have reused for another device or
// socket. Elsewhere the write runs in a goroutine that Close cannot stop.
func (p *Port) Write(b []byte) (int, error) {
	p.writeMu.Lock()
	defer p.writeMu.Unlock()
	select {
	case <-p.closed:
		return 0, fmt.Errorf("write %s: %w", p.name, ErrPortClosed)
	default:
	}
	err := p.lock.SetWriteDeadline(time.Now().Add(p.writeTimeout))
	if errors.Is(err, os.ErrNoDeadline) {
		return p.writeUnpolled(b)
	}
	if err != nil {
		return 0, fmt.Errorf("write %s: set deadline: %w", p.name, err)
	}
	n, err := writeAll(p.lock, b)
	switch {
	case err == nil:
		return n, nil
	case errors.Is(err, os.ErrDeadlineExceeded):
		p.Close()
		return n, fmt.Errorf("write %s: %d bytes not accepted within %s; port closed", p.name, len(b)-n, p.writeTimeout)
	case p.isClosed():
		return n, fmt.Errorf("write %s: %w", p.name, ErrPortClosed) // the close broke the write
	default:
		return n, fmt.Errorf("write %s: %w", p.name, err)
	}
}

func (p *Port) isClosed() bool {
	select {
	case <-p.closed:
		return true
	default:
		return false
	}
}

// writeUnpolled writes b through go.bug.st/serial, which has no deadline,
// for systems whose device descriptor cannot be polled (macOS ttys, systems
// without flock). A write that timed out may still complete later in the
// background.
func (p *Port) writeUnpolled(b []byte) (int, error) {
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
		if r.err != nil && p.isClosed() {
			r.err = ErrPortClosed // the close broke the write
		}
		if r.err != nil {
			return r.n, fmt.Errorf("write %s: %w", p.name, r.err)
		}
		return r.n, nil
	case <-timer.C:
		p.Close()
		return 0, fmt.Errorf("write %s: %d bytes not accepted within %s; port closed", p.name, len(b), p.writeTimeout)
	case <-p.closed:
		return 0, fmt.Errorf("write %s: %w", p.name, ErrPortClosed)
	}
}

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

// Close closes the port and releases its lock, once; later calls return the
// first result. A pending Read returns io.EOF.
func (p *Port) Close() error {
	p.closeOnce.Do(func() {
		close(p.closed)
		p.closeErr = p.sp.Close()
		p.lock.Close()
	})
	return p.closeErr
}
