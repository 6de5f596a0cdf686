package modemsim

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Config describes one emulated module. The zero value of every field but
// Model is a working default.
type Config struct {
	// Model selects the personality: "sim7600" or "sim7800" (SIMCom), or
	// "bg96" (Quectel; see Models). Anything else makes Start fail.
	Model string
	// Link, when set, is made a symlink to the pty slave so clients can use
	// a stable path such as /tmp/ttyUSB2; an existing symlink there is
	// replaced, any other file is an error. Close removes it.
	Link string
	// StateDir holds the certificate files downloaded with AT+CCERTDOWN
	// (bg96: the UFS files of AT+QFUPL, in its ufs folder). They survive
	// reboots and restarts, like the module's flash. "" makes a temporary
	// directory that Close removes.
	StateDir string
	// Baud is the line rate, bits per second at 10 bits per byte, applied
	// to both directions. 0 follows the rate the client set on its end of
	// the pty (read from the termios each time), 115200 until it sets one.
	// A negative value turns throttling off.
	Baud int
	// CommandLatency is added before each command response (prompts and
	// final result codes).
	CommandLatency time.Duration
	// NetworkLatency is added before a session's TCP connect and before
	// each write to a session socket, which blocks meanwhile: it models a
	// stalling link (little throughput), not distance. For propagation
	// delay use NetworkDelay.
	NetworkLatency time.Duration
	// NetworkDelay is the one-way propagation delay between the module's
	// socket and the server, each direction: bytes written at t arrive at
	// t+NetworkDelay, in order, with any number of writes in flight (up to
	// 4 MiB each way), and a connect takes a round trip (2×NetworkDelay).
	// A round trip is thus 2×NetworkDelay. 0: none.
	NetworkDelay time.Duration
	// NetworkRate caps each direction of a session's network at this many
	// bytes per second (serialisation before the propagation delay). 0: no
	// cap.
	NetworkRate int
	// SIMBusy is the time after each boot (Start and every reboot) during
	// which SIM-dependent commands answer "+CME ERROR: SIM busy", AT+CSQ
	// answers 99,99 and the module is not registered.
	SIMBusy time.Duration
	// RebootDelay is how long the module is deaf and silent between a
	// reboot (AT+CRESET or the reboot fault) and its "RDY".
	RebootDelay time.Duration
	// AnnounceBoot prints the boot URCs (RDY, +CPIN: READY, SMS DONE,
	// PB DONE) at Start as well; they wait in the pty until a client reads.
	AnnounceBoot bool
	// Hosts overrides name resolution for session hosts (name -> IP
	// literal). Other names use the system resolver; a failure ends the
	// open with +CCHOPEN: <id>,13 (bg96: +QSSLOPEN/+QIOPEN: <id>,565).
	Hosts map[string]string
	// IMEI and ICCID override the model's identities (15 and 19-20 digits).
	IMEI  string
	ICCID string
	// IPAddress is the address AT+CCHADDR reports (bg96: AT+QIACT? for
	// context 1); "" means 10.71.155.118.
	IPAddress string
	// Clock is the time source the module's RTC (AT+CCLK) runs on, for
	// tests that need a frozen clock; nil means time.Now. The RTC starts at
	// 1980-01-06 00:00:00 like an unsynchronised module, unless
	// NetworkTime.
	Clock func() time.Time
	// NetworkTime sets the RTC to Clock's time at every power-up (Start
	// and each reboot), as on a module that takes the network's time
	// (NITZ) when it registers. A clock jump (FaultClockJump) then lasts
	// until the next jump, AT+CCLK write or reboot.
	NetworkTime bool
	// ControlSocket, when set, is the path of a unix socket serving the
	// control protocol (see README.md). Close removes it.
	ControlSocket string
	// NoKeyPwd emulates SIMCom firmware older than the manual's 2021-04-21
	// revision, whose AT+CSSLCFG has no "keypwd": AT+CSSLCFG=? does not
	// list it and setting it answers ERROR, so an encrypted client key
	// cannot be unlocked.
	NoKeyPwd bool
	// Trace, when set, receives a timestamped transcript of both directions
	// of the serial line. Certificate file contents and SSL key passwords
	// are redacted.
	Trace io.Writer
	// Logger receives the emulator's own log records; nil discards them.
	Logger *slog.Logger
}

// Modem is a running emulated module. Its methods are safe for concurrent
// use.
type Modem struct {
	cfg      Config
	prof     profile
	log      *slog.Logger
	pty      *pty
	path     string
	linkMade bool
	stateDir string
	tempDir  bool
	store    *certStore
	imei     string
	iccid    string
	ipAddr   string
	clock    func() time.Time
	trace    *tracer
	counters counters
	control  *controlServer
	clientEv *os.File // inotify open/close events on the slave; nil if unavailable

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	in        chan []byte   // reader -> core: bytes from the host, already paced
	events    chan func()   // any goroutine -> core: closures run on the core
	writeCh   chan outItem  // core -> writer: at most one item in flight
	writeDone chan struct{} // writer -> core: the item was written
	closeOnce sync.Once
	closeErr  error

	// Everything below is owned by the core goroutine (run) and must only
	// be touched from closures it executes.
	st         modemState
	sessions   []*session
	outQ       []outItem
	writerBusy bool
	curDone    func()
	rr         int // round-robin start for data frames
	inBuf      []byte
	mode       inputMode
	line       []byte
	payload    *payloadWait
	pending    *pendingSend
	dropNext   bool
	delayNext  time.Duration
	bootEpoch  int
	simEpoch   int
	netEpoch   int
	timers     map[*time.Timer]struct{}
	transp     *transparentState
	q          *quectel       // the Quectel dialect's state; nil for SIMCom models
	signal     *signalSetting // SetSignal's choice; nil: the emulated cell's
}

// inputMode says how the core interprets bytes from the host.
type inputMode int

const (
	modeCommand inputMode = iota // AT command lines
	modePayload                  // counted bytes after a '>' prompt
	modeData                     // transparent session data
	modeOff                      // rebooting: input is discarded
)

// outItem is one atomic unit of output: a response, a URC or a data frame.
type outItem struct {
	data    []byte
	delay   time.Duration // waited before the first byte
	traceAs []byte        // what the transcript shows instead of data
	onDone  func()        // runs on the core once data is written
}

// payloadWait is a command waiting for its counted payload.
type payloadWait struct {
	need   int
	buf    []byte
	redact bool // certificate contents never reach the transcript
	done   func(data []byte) reply
	drop   bool
	delay  time.Duration
	// prompt is what opens the stage; nil means SIMCom's "\r\n>".
	prompt []byte
	// feed, when set, takes the host's bytes instead of counting need of
	// them: it returns how many of in it consumed (at least one) and ends
	// the stage itself with completePayload.
	feed func(in []byte) int
}

// pendingSend is an AT+CCHSEND whose prompt waits for room in the
// session's send buffer.
type pendingSend struct {
	s     *session
	n     int
	drop  bool
	delay time.Duration
}

const (
	// maxLine bounds a command line; longer input is discarded with ERROR.
	maxLine = 2048
	// recvCacheLimit bounds the bytes a session holds that the host has not
	// taken; reading the socket pauses above it (backpressure).
	recvCacheLimit = 16 * 1024
	// sendBufferLimit bounds bytes accepted by AT+CCHSEND that are not yet
	// written to the socket; four 2048-byte sends let a host pipeline.
	sendBufferLimit = 4 * 2048
	// frameMax is the largest +CCHRECV: DATA frame, as the seed log shows.
	frameMax = 1024
	// defaultIP is what AT+CCHADDR reports unless Config.IPAddress is set.
	defaultIP = "10.71.155.118"
	// defaultICCID is the emulated SIM's ICCID without its check digit.
	defaultICCID = "898600123456789012"
)

// Start creates the pty, applies cfg and starts the module. The module is
// booted and answering when Start returns. It fails when the model is
// unknown, a setting is invalid, or the pty, link, state directory or
// control socket cannot be created; nothing is left behind on failure.
func Start(cfg Config) (*Modem, error) {
	prof, err := lookupProfile(cfg.Model)
	if err != nil {
		return nil, err
	}
	if err := validateConfig(&cfg); err != nil {
		return nil, err
	}
	m := newModem(cfg, prof)
	if err := m.makeStateDir(); err != nil {
		return nil, err
	}
	if err := m.openEndpoints(); err != nil {
		m.undoStart()
		return nil, err
	}

	m.sessions = make([]*session, 2)
	for i := range m.sessions {
		m.sessions[i] = newSession(i)
	}
	m.st = m.powerOnState()
	m.st.pdp = defaultPDP()
	if prof.dialect == dialectQuectel {
		m.q = newQuectel(m)
	}
	m.boot(cfg.AnnounceBoot)

	if m.clientEv, err = m.pty.watchClients(); err != nil {
		m.log.Warn("cannot watch the pty for clients; a client killed while holding TIOCEXCL leaves the port busy for non-root users", "modem", m.path, "err", err)
	}
	m.startLoops()
	m.log.Info("modem started", "modem", m.path, "model", cfg.Model, "pty", m.pty.slavePath, "state_dir", m.stateDir)
	return m, nil
}

// newModem returns the module for a validated cfg with the model's and the
// package's defaults filled in. It creates nothing outside the process.
func newModem(cfg Config, prof profile) *Modem {
	m := &Modem{
		cfg:       cfg,
		prof:      prof,
		log:       cfg.Logger,
		imei:      cfg.IMEI,
		iccid:     cfg.ICCID,
		ipAddr:    cfg.IPAddress,
		clock:     cfg.Clock,
		trace:     &tracer{w: cfg.Trace},
		in:        make(chan []byte, 16),
		events:    make(chan func(), 64),
		writeCh:   make(chan outItem, 1),
		writeDone: make(chan struct{}),
		timers:    make(map[*time.Timer]struct{}),
	}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	if m.imei == "" {
		m.imei = luhn(prof.imeiPrefix)
	}
	if m.iccid == "" {
		m.iccid = luhn(defaultICCID)
	}
	if m.ipAddr == "" {
		m.ipAddr = defaultIP
	}
	if m.clock == nil {
		m.clock = time.Now
	}
	return m
}

// makeStateDir creates the certificate store's directory: Config.StateDir,
// or a temporary one that Close removes.
func (m *Modem) makeStateDir() error {
	if m.cfg.StateDir == "" {
		dir, err := os.MkdirTemp("", "modemsim-state-")
		if err != nil {
			return fmt.Errorf("modemsim: create temporary state directory: %w", err)
		}
		m.stateDir, m.tempDir = dir, true
	} else {
		if err := os.MkdirAll(m.cfg.StateDir, 0o700); err != nil {
			return fmt.Errorf("modemsim: create state directory %s: %w", m.cfg.StateDir, err)
		}
		m.stateDir = m.cfg.StateDir
	}
	m.store = &certStore{dir: m.stateDir}
	return nil
}

// openEndpoints opens what clients reach the module by: the pty, its link
// and the control socket. On failure the caller cleans up with undoStart.
func (m *Modem) openEndpoints() error {
	var err error
	if m.pty, err = openPTY(); err != nil {
		return fmt.Errorf("modemsim: %w", err)
	}
	m.path = m.pty.slavePath
	if m.cfg.Link != "" {
		if err := makeLink(m.pty.slavePath, m.cfg.Link); err != nil {
			return err
		}
		m.linkMade = true
		m.path = m.cfg.Link
	}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	if m.cfg.ControlSocket != "" {
		cs, err := listenControl(m, m.cfg.ControlSocket)
		if err != nil {
			m.cancel()
			return err
		}
		m.control = cs
	}
	return nil
}

// undoStart removes what a Start that failed before any goroutine ran had
// created: the control socket, the link, the pty and a temporary state
// directory.
func (m *Modem) undoStart() {
	if m.control != nil {
		m.control.close()
	}
	if m.linkMade {
		os.Remove(m.cfg.Link)
	}
	if m.pty != nil {
		m.pty.closeMaster()
		m.pty.closeSlave()
	}
	if m.tempDir {
		os.RemoveAll(m.stateDir)
	}
}

// startLoops starts the module's goroutines; Close waits for them.
func (m *Modem) startLoops() {
	m.wg.Add(3)
	go m.readLoop()
	go m.writeLoop()
	go m.run()
	if m.clientEv != nil {
		m.wg.Add(1)
		go m.clientWatchLoop()
	}
	if m.control != nil {
		m.wg.Add(1)
		go m.control.serve(&m.wg)
	}
}

func validateConfig(cfg *Config) error {
	switch {
	case cfg.CommandLatency < 0:
		return fmt.Errorf("modemsim: CommandLatency %v is negative", cfg.CommandLatency)
	case cfg.NetworkLatency < 0:
		return fmt.Errorf("modemsim: NetworkLatency %v is negative", cfg.NetworkLatency)
	case cfg.NetworkDelay < 0:
		return fmt.Errorf("modemsim: NetworkDelay %v is negative", cfg.NetworkDelay)
	case cfg.NetworkRate < 0:
		return fmt.Errorf("modemsim: NetworkRate %d is negative", cfg.NetworkRate)
	case cfg.SIMBusy < 0:
		return fmt.Errorf("modemsim: SIMBusy %v is negative", cfg.SIMBusy)
	case cfg.RebootDelay < 0:
		return fmt.Errorf("modemsim: RebootDelay %v is negative", cfg.RebootDelay)
	case cfg.IMEI != "" && (len(cfg.IMEI) != 15 || !allDigits(cfg.IMEI)):
		return fmt.Errorf("modemsim: IMEI %q is not 15 digits", cfg.IMEI)
	case cfg.ICCID != "" && (len(cfg.ICCID) < 19 || len(cfg.ICCID) > 20 || !allDigits(cfg.ICCID)):
		return fmt.Errorf("modemsim: ICCID %q is not 19 or 20 digits", cfg.ICCID)
	case cfg.IPAddress != "" && net.ParseIP(cfg.IPAddress) == nil:
		return fmt.Errorf("modemsim: IPAddress %q is not an IP address", cfg.IPAddress)
	}
	for name, ip := range cfg.Hosts {
		if net.ParseIP(ip) == nil {
			return fmt.Errorf("modemsim: Hosts[%q] = %q is not an IP address", name, ip)
		}
	}
	return nil
}

// makeLink points link at target, replacing a stale symlink but never a
// regular file or directory.
func makeLink(target, link string) error {
	if fi, err := os.Lstat(link); err == nil {
		if fi.Mode()&os.ModeSymlink == 0 {
			return fmt.Errorf("modemsim: link path %s exists and is not a symlink", link)
		}
		if err := os.Remove(link); err != nil {
			return fmt.Errorf("modemsim: replace stale link %s: %w", link, err)
		}
	}
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		return fmt.Errorf("modemsim: create directory for link %s: %w", link, err)
	}
	if err := os.Symlink(target, link); err != nil {
		return fmt.Errorf("modemsim: link %s -> %s: %w", link, target, err)
	}
	return nil
}

// Path returns the path a client opens: Config.Link when set, otherwise
// the pty slave (/dev/pts/N).
func (m *Modem) Path() string { return m.path }

// StateDir returns the directory holding the downloaded certificate files.
func (m *Modem) StateDir() string { return m.stateDir }

// Counters returns a snapshot of the byte and command counters.
func (m *Modem) Counters() Counters { return m.counters.snapshot() }

// Close stops the module: it ends all sessions (closing their sockets),
// the control socket and the pty, removes the link and a temporary state
// directory, and waits for every goroutine. It prints nothing. Later calls
// return the first call's result.
func (m *Modem) Close() error {
	m.closeOnce.Do(func() {
		m.cancel()
		var errs []error
		if m.control != nil {
			if err := m.control.close(); err != nil {
				errs = append(errs, err)
			}
		}
		// Closing the master unblocks the reader and writer.
		if err := m.pty.closeMaster(); err != nil {
			errs = append(errs, fmt.Errorf("modemsim: close pty master: %w", err))
		}
		if m.clientEv != nil {
			m.clientEv.Close()
		}
		m.wg.Wait()
		if err := m.pty.closeSlave(); err != nil {
			errs = append(errs, fmt.Errorf("modemsim: %w", err))
		}
		if m.linkMade {
			if target, err := os.Readlink(m.cfg.Link); err == nil && target == m.pty.slavePath {
				if err := os.Remove(m.cfg.Link); err != nil {
					errs = append(errs, fmt.Errorf("modemsim: remove link %s: %w", m.cfg.Link, err))
				}
			}
		}
		if m.tempDir {
			if err := os.RemoveAll(m.stateDir); err != nil {
				errs = append(errs, fmt.Errorf("modemsim: remove state directory %s: %w", m.stateDir, err))
			}
		}
		m.log.Info("modem closed", "modem", m.path)
		m.closeErr = errors.Join(errs...)
	})
	return m.closeErr
}

// clientWatchLoop counts the clients holding the slave open and performs
// the last-close duties when the count drops to zero (see
// pty.watchClients). Events read in one batch are netted first, so a
// client reopening at once does not lose its first answers to a flush.
func (m *Modem) clientWatchLoop() {
	defer m.wg.Done()
	buf := make([]byte, 64*unix.SizeofInotifyEvent)
	clients := 0
	for {
		n, err := m.clientEv.Read(buf)
		if err != nil {
			return
		}
		closed := false
		// struct inotify_event: wd, mask, cookie, len (native endian), name.
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			mask := binary.NativeEndian.Uint32(buf[off+4:])
			nameLen := binary.NativeEndian.Uint32(buf[off+12:])
			switch {
			case mask&unix.IN_OPEN != 0:
				clients++
			case mask&(unix.IN_CLOSE_WRITE|unix.IN_CLOSE_NOWRITE) != 0:
				clients--
				closed = true
			}
			off += unix.SizeofInotifyEvent + int(nameLen)
		}
		if closed && clients <= 0 {
			clients = 0
			if err := m.pty.lastClose(); err != nil {
				m.log.Warn("pty last-close duties failed", "modem", m.path, "err", err)
			}
		}
	}
}

// post queues fn to run on the core goroutine. It returns false when the
// modem is closing and fn will never run.
func (m *Modem) post(fn func()) bool {
	select {
	case m.events <- fn:
		return true
	case <-m.ctx.Done():
		return false
	}
}

// call runs fn on the core goroutine and waits for it to finish.
func (m *Modem) call(fn func()) bool {
	done := make(chan struct{})
	if !m.post(func() { fn(); close(done) }) {
		return false
	}
	select {
	case <-done:
		return true
	case <-m.ctx.Done():
		return false
	}
}

// after runs fn on the core goroutine once d has passed, unless the modem
// closes first.
func (m *Modem) after(d time.Duration, fn func()) {
	var t *time.Timer
	t = time.AfterFunc(d, func() {
		m.post(func() {
			delete(m.timers, t)
			fn()
		})
	})
	m.timers[t] = struct{}{}
}

// run is the core: the only goroutine that touches module state. It takes
// host input, events from sessions, timers and faults, and schedules output.
func (m *Modem) run() {
	defer m.wg.Done()
	defer func() {
		for t := range m.timers {
			t.Stop()
		}
		for _, s := range m.sessions {
			if s.run != nil {
				s.run.abort()
				s.run = nil
			}
		}
		if m.q != nil {
			m.q.abortAll()
		}
	}()
	// Boot output may already be queued.
	m.pump()
	for {
		in := m.in
		if m.inputBlocked() {
			// The host waits for the prompt; leave its bytes in the pty so a
			// flood blocks the host instead of growing memory here.
			in = nil
		}
		select {
		case <-m.ctx.Done():
			return
		case b := <-in:
			m.inBuf = append(m.inBuf, b...)
			m.processInput()
		case fn := <-m.events:
			fn()
		case <-m.writeDone:
			m.writerBusy = false
			if f := m.curDone; f != nil {
				m.curDone = nil
				f()
			}
		}
		m.pump()
	}
}

// send queues bytes for the host.
func (m *Modem) send(b []byte, delay time.Duration, traceAs []byte, onDone func()) {
	m.outQ = append(m.outQ, outItem{data: b, delay: delay, traceAs: traceAs, onDone: onDone})
}

// urc queues an unsolicited result code framed as <CR><LF>text<CR><LF>.
func (m *Modem) urc(text string) {
	m.send([]byte("\r\n"+text+"\r\n"), 0, nil, nil)
}

// pump hands the writer its next item: queued responses and URCs first,
// then received session data, one frame at a time, round robin.
func (m *Modem) pump() {
	if m.pending != nil {
		m.servePendingSend()
	}
	if len(m.inBuf) > 0 && !m.inputBlocked() {
		m.processInput()
	}
	if m.writerBusy {
		return
	}
	if len(m.outQ) > 0 {
		it := m.outQ[0]
		m.outQ[0] = outItem{}
		m.outQ = m.outQ[1:]
		m.dispatch(it)
		return
	}
	if m.q != nil {
		if it, ok := m.q.pushFrame(m); ok {
			m.dispatch(it)
		}
		return
	}
	if m.mode == modeData {
		if it, ok := m.transparentFrame(); ok {
			m.dispatch(it)
		}
		return
	}
	for k := range m.sessions {
		i := (m.rr + k) % len(m.sessions)
		s := m.sessions[i]
		if s.recvMode != 0 || s.transparent || len(s.cache) == 0 {
			continue
		}
		n := min(len(s.cache), frameMax)
		hdr := fmt.Sprintf("\r\n+CCHRECV: DATA,%d,%d\r\n", s.id, n)
		frame := make([]byte, 0, len(hdr)+n)
		frame = append(append(frame, hdr...), s.cache[:n]...)
		s.takeCache(n)
		m.counters.payloadRx.Add(int64(n))
		m.rr = i + 1
		m.dispatch(outItem{data: frame})
		if len(s.cache) == 0 && s.closeURC != "" {
			m.urc(s.closeURC)
			s.closeURC = ""
		}
		return
	}
}

func (m *Modem) dispatch(it outItem) {
	m.writerBusy = true
	m.curDone = it.onDone
	m.writeCh <- it
}

// formatResponse frames information text and a final result code as a
// SIMCom module does: the information lines as one block between CRLFs,
// then the result code between CRLFs.
func formatResponse(lines []string, final string) []byte {
	var b strings.Builder
	if len(lines) > 0 {
		b.WriteString("\r\n")
		b.WriteString(strings.Join(lines, "\r\n"))
		b.WriteString("\r\n")
	}
	if final != "" {
		b.WriteString("\r\n")
		b.WriteString(final)
		b.WriteString("\r\n")
	}
	return []byte(b.String())
}
