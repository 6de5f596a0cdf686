package modemsim

import (
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// pty is the emulator's end of a Linux pseudo-terminal: the master, opened
// non-blocking so the runtime poller can interrupt reads and writes on
// Close, and one slave descriptor the emulator keeps open for its whole
// life, because reading a master whose slave nobody holds fails with EIO
// and a client's close would otherwise make the line vanish.
type pty struct {
	master    *os.File
	slaveFD   int
	slavePath string
}

// openPTY allocates a pseudo-terminal, unlocks its slave and puts the slave
// in raw mode at 115200 baud, the line settings a SIMCom module's USB AT
// port presents, so that bytes cross unchanged even before a client sets
// its own mode.
func openPTY() (*pty, error) {
	mfd, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("open /dev/ptmx: %w", err)
	}
	fail := func(step string, err error) (*pty, error) {
		unix.Close(mfd)
		return nil, fmt.Errorf("pty %s: %w", step, err)
	}
	// grantpt is a no-op with devpts; unlockpt is the TIOCSPTLCK ioctl.
	if err := unix.IoctlSetPointerInt(mfd, unix.TIOCSPTLCK, 0); err != nil {
		return fail("unlock slave (TIOCSPTLCK)", err)
	}
	n, err := unix.IoctlGetUint32(mfd, unix.TIOCGPTN)
	if err != nil {
		return fail("get slave number (TIOCGPTN)", err)
	}
	slavePath := "/dev/pts/" + strconv.FormatUint(uint64(n), 10)
	sfd, err := unix.Open(slavePath, unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fail("open slave "+slavePath, err)
	}
	if err := makeRaw(sfd); err != nil {
		unix.Close(sfd)
		return fail("set raw mode on "+slavePath, err)
	}
	return &pty{
		master:    os.NewFile(uintptr(mfd), "/dev/ptmx"),
		slaveFD:   sfd,
		slavePath: slavePath,
	}, nil
}

// makeRaw is cfmakeraw plus CLOCAL|CREAD and 115200 baud.
func makeRaw(fd int) error {
	t, err := unix.IoctlGetTermios(fd, unix.TCGETS2)
	if err != nil {
		return err
	}
	t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	t.Oflag &^= unix.OPOST
	t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	t.Cflag &^= unix.CSIZE | unix.PARENB | unix.CBAUD
	t.Cflag |= unix.CS8 | unix.CLOCAL | unix.CREAD | unix.BOTHER
	t.Ispeed, t.Ospeed = 115200, 115200
	t.Cc[unix.VMIN], t.Cc[unix.VTIME] = 1, 0
	return unix.IoctlSetTermios(fd, unix.TCSETS2, t)
}

// baud reports the line rate the client last set on the slave, in bits per
// second; 0 when it cannot be read or the client chose B0 (hang up).
func (p *pty) baud() int {
	t, err := unix.IoctlGetTermios(p.slaveFD, unix.TCGETS2)
	if err != nil {
		return 0
	}
	return int(t.Ospeed)
}

// watchClients returns a readable inotify stream of open and close events
// on the slave. The emulator's own slave descriptor keeps this tty alive,
// so its last client's close is not a last close for the kernel: the
// TIOCEXCL that go.bug.st/serial sets would survive a client killed with
// SIGKILL (the port stays "busy" for every non-root opener), and bytes
// the client never read would greet the next client. These events let
// the emulator do what a real tty's last close does.
func (p *pty) watchClients() (*os.File, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("inotify init: %w", err)
	}
	if _, err := unix.InotifyAddWatch(fd, p.slavePath, unix.IN_OPEN|unix.IN_CLOSE_WRITE|unix.IN_CLOSE_NOWRITE); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("inotify watch %s: %w", p.slavePath, err)
	}
	return os.NewFile(uintptr(fd), "inotify:"+p.slavePath), nil
}

// lastClose clears TIOCEXCL and discards output no client read, as the
// last close of a real tty does.
func (p *pty) lastClose() error {
	if err := unix.IoctlSetInt(p.slaveFD, unix.TIOCNXCL, 0); err != nil {
		return fmt.Errorf("clear TIOCEXCL: %w", err)
	}
	if err := unix.IoctlSetInt(p.slaveFD, unix.TCFLSH, unix.TCIFLUSH); err != nil {
		return fmt.Errorf("flush unread output: %w", err)
	}
	return nil
}

// closeMaster releases the master, which unblocks the emulator's reads and
// writes and hangs up the client.
func (p *pty) closeMaster() error {
	return p.master.Close()
}

// closeSlave releases the emulator's slave descriptor; only after every
// goroutine that uses it has stopped.
func (p *pty) closeSlave() error {
	if err := unix.Close(p.slaveFD); err != nil {
		return fmt.Errorf("close pty slave %s: %w", p.slavePath, err)
	}
	return nil
}
