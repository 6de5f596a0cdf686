//go:build linux

package atkit_test

import (
	"os"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

// linePTY is a real pseudo-terminal for the kit's tests: Path is the slave,
// the device a driver opens with OpenPort; Modem is the master, the modem's
// side of the line. The test keeps a slave descriptor of its own open for
// the pty's whole life (reading a master whose slave nobody holds fails),
// and uses it to see what waits in the line's input queue.
type linePTY struct {
	Path    string
	Modem   *os.File
	slaveFD int
}

func openPTY(t *testing.T) *linePTY {
	t.Helper()
	mfd, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		t.Fatalf("open /dev/ptmx: %v", err)
	}
	modem := os.NewFile(uintptr(mfd), "/dev/ptmx")
	t.Cleanup(func() { modem.Close() })
	if err := unix.IoctlSetPointerInt(mfd, unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlockpt: %v", err)
	}
	n, err := unix.IoctlGetUint32(mfd, unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("ptsname: %v", err)
	}
	path := "/dev/pts/" + strconv.FormatUint(uint64(n), 10)
	sfd, err := unix.Open(path, unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	t.Cleanup(func() { unix.Close(sfd) })
	// cfmakeraw, so bytes cross unchanged even before OpenPort sets a mode.
	tio, err := unix.IoctlGetTermios(sfd, unix.TCGETS)
	if err != nil {
		t.Fatalf("tcgetattr: %v", err)
	}
	tio.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	tio.Oflag &^= unix.OPOST
	tio.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	tio.Cflag &^= unix.CSIZE | unix.PARENB
	tio.Cflag |= unix.CS8 | unix.CLOCAL | unix.CREAD
	tio.Cc[unix.VMIN], tio.Cc[unix.VTIME] = 1, 0
	if err := unix.IoctlSetTermios(sfd, unix.TCSETS, tio); err != nil {
		t.Fatalf("tcsetattr: %v", err)
	}
	return &linePTY{Path: path, Modem: modem, slaveFD: sfd}
}

// queued is how many bytes wait in the line's input queue, unread.
func (p *linePTY) queued(t *testing.T) int {
	t.Helper()
	n, err := unix.IoctlGetInt(p.slaveFD, unix.TIOCINQ)
	if err != nil {
		t.Fatalf("TIOCINQ: %v", err)
	}
	return n
}
