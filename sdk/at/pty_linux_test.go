//go:build linux

package at

import (
	"fmt"
	"io"
	"os"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

// openPTY opens a pseudo-terminal pair with the slave in raw mode, as a
// serial port is used. The master plays the modem's side of the line.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open /dev/ptmx: %v", err)
	}
	t.Cleanup(func() { _ = master.Close() })
	var ptn uint32
	unlock := int32(0)
	if err := ioctl(master, syscall.TIOCSPTLCK, unsafe.Pointer(&unlock)); err != nil {
		t.Fatalf("unlockpt: %v", err)
	}
	if err := ioctl(master, syscall.TIOCGPTN, unsafe.Pointer(&ptn)); err != nil {
		t.Fatalf("ptsname: %v", err)
	}
	slave, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", ptn), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open pts %d: %v", ptn, err)
	}
	// cfmakeraw: no echo, no CR/LF translation, no signals, 8 bits.
	var tio syscall.Termios
	if err := ioctl(slave, syscall.TCGETS, unsafe.Pointer(&tio)); err != nil {
		t.Fatalf("tcgetattr: %v", err)
	}
	tio.Iflag &^= syscall.IGNBRK | syscall.BRKINT | syscall.PARMRK | syscall.ISTRIP |
		syscall.INLCR | syscall.IGNCR | syscall.ICRNL | syscall.IXON
	tio.Oflag &^= syscall.OPOST
	tio.Lflag &^= syscall.ECHO | syscall.ECHONL | syscall.ICANON | syscall.ISIG | syscall.IEXTEN
	tio.Cflag &^= syscall.CSIZE | syscall.PARENB
	tio.Cflag |= syscall.CS8
	tio.Cc[syscall.VMIN] = 1
	tio.Cc[syscall.VTIME] = 0
	if err := ioctl(slave, syscall.TCSETS, unsafe.Pointer(&tio)); err != nil {
		t.Fatalf("tcsetattr: %v", err)
	}
	return master, slave
}

// ioctl runs an ioctl through SyscallConn, so the file stays non-blocking and
// a pending Read is still ended by Close.
func ioctl(f *os.File, req uintptr, arg unsafe.Pointer) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var errno syscall.Errno
	if err := rc.Control(func(fd uintptr) {
		_, _, errno = syscall.Syscall(syscall.SYS_IOCTL, fd, req, uintptr(arg))
	}); err != nil {
		return err
	}
	if errno != 0 {
		return errno
	}
	return nil
}

// TestOverRealPTY runs the channel on the slave side of a real
// pseudo-terminal, the way the driver runs it on /dev/ttyUSB2, with a
// scripted peer on the master side: a binary payload full of control
// characters must cross the tty layer and the parser intact, and Close must
// end the Read pending on the tty.
func TestOverRealPTY(t *testing.T) {
	master, slave := openPTY(t)
	c := New(slave)
	bin := newSink()
	c.HandleBinary("+CCHRECV: DATA,", CCHRecvLength, bin.handle)
	res := goCommand(testCtx(t), c, "AT+CSQ")

	_ = master.SetReadDeadline(time.Now().Add(failAfter))
	got := make([]byte, len("AT+CSQ\r"))
	if _, err := io.ReadFull(master, got); err != nil || string(got) != "AT+CSQ\r" {
		t.Fatalf("master read %q, %v", got, err)
	}
	payload := "\r\nOK\r\n\x00\x03\x04\x11\x13\x1a\x7f>\xff"
	_ = master.SetWriteDeadline(time.Now().Add(failAfter))
	if _, err := fmt.Fprintf(master, "AT+CSQ\r\r\n+CCHRECV: DATA,0,%d\r\n%s\r\n+CSQ: 20,99\r\n\r\nOK\r\n", len(payload), payload); err != nil {
		t.Fatal(err)
	}
	awaitOK(t, res, "Command over a pty", "+CSQ: 20,99")
	if u := bin.next(t); string(u.Payload) != payload {
		t.Fatalf("payload over a pty = %q, want %q", u.Payload, payload)
	}

	closeWithin(t, c, "Close did not end the Read pending on the tty")
	if c.Err() != nil {
		t.Fatalf("Err() after Close = %v", c.Err())
	}
}
