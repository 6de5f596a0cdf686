package simcom

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cellgate/cellgate/sdk"
	"github.com/cellgate/cellgate/sdk/at"
	"github.com/cellgate/cellgate/sdk/atkit"
)

const (
	// sendWindow is how many AT+CCHSEND chunks may await their
	// "+CCHSEND: <id>,<err>" report. Waiting for each report before the next
	// send would leave the serial line idle for a network round trip per
	// 2 KiB; four chunks keep it busy without hiding a failed send for long.
	sendWindow = 4
	// defaultReportTimeout bounds the wait for a send report. Some firmware is
	// reported to omit them; after this long the driver asks AT+CCHSEND?.
	defaultReportTimeout = 30 * time.Second
	// recvQueue bounds the frames buffered for a reader that is slower than
	// the modem. When it is full the URC dispatcher waits, which stops the
	// serial reader, which makes the modem stop reading its socket: the
	// backpressure reaches the network instead of growing memory.
	recvQueue = 64
)

// Dial opens a CCH session to req.Host:req.Port. DialModemTLS lets the modem
// terminate TLS with SSL context req.Profile (client type 2); DialPlainTCP
// opens a plain TCP socket (client type 1) for host-side TLS. The deferred
// +CCHOPEN result is awaited up to the context's negotiate time plus a margin.
func (d *Driver) Dial(ctx context.Context, req sdk.DialRequest) (sdk.Session, error) {
	if err := atkit.CheckString(req.Host); err != nil || req.Host == "" || len(req.Host) > 256 {
		return nil, &sdk.ModemError{Op: "dial", Code: -1, Text: fmt.Sprintf("invalid host %q", req.Host)}
	}
	if req.Port < 1 || req.Port > 65535 {
		return nil, &sdk.ModemError{Op: "dial", Code: -1, Text: fmt.Sprintf("invalid port %d", req.Port)}
	}
	clientType, ok := clientType(req.Mode)
	if !ok {
		return nil, &sdk.ModemError{Op: "dial", Code: -1, Text: fmt.Sprintf("unknown dial mode %d", req.Mode)}
	}
	ch, err := d.ready(ctx)
	if err != nil {
		return nil, err
	}
	if d.withoutNetwork() {
		return nil, &sdk.ModemError{Op: "dial", Code: -1, Text: "modem opened without network (ModemConfig.NoNetwork): Open it again without to dial"}
	}
	if err := d.startService(ctx, ch); err != nil {
		return nil, err
	}
	s, err := d.claim()
	if err != nil {
		return nil, err
	}
	err = d.open(ctx, ch, s, req, clientType)
	var stale *staleSlotError
	if errors.As(err, &stale) && ctx.Err() == nil {
		err = d.open(ctx, ch, s, req, clientType) // once, after closing the slot
		if errors.As(err, &stale) {
			err = stale.cause
		}
	}
	if err != nil {
		d.release(s)
		return nil, err
	}
	return s, nil
}

// clientType is the AT+CCHOPEN client type for a dial mode: 2 (SSL/TLS)
// when the modem terminates TLS, 1 (TCP) for a plain socket under host-side
// TLS. ok is false for a mode the contract does not define.
func clientType(m sdk.DialMode) (ct int, ok bool) {
	switch m {
	case sdk.DialModemTLS:
		return 2, true
	case sdk.DialPlainTCP:
		return 1, true
	}
	return 0, false
}

// staleSlotError is a CCHOPEN refused with a bare ERROR, after which the
// slot was closed so that one more attempt can succeed.
type staleSlotError struct{ cause error }

func (e *staleSlotError) Error() string { return e.cause.Error() }
func (e *staleSlotError) Unwrap() error { return e.cause }

// startService sends AT+CCHSET and AT+CCHMODE (only accepted before the
// service starts) and AT+CCHSTART, once per bring-up.
func (d *Driver) startService(ctx context.Context, ch *at.Channel) error {
	d.bringup.Lock()
	defer d.bringup.Unlock()
	d.mu.Lock()
	started := d.started
	d.mu.Unlock()
	if started {
		return nil
	}
	steps := []atkit.Step{
		// Send reports on (flow control needs them), data pushed as
		// +CCHRECV: DATA frames, normal (not transparent) mode.
		{Op: "configure CCH reports", Cmd: "AT+CCHSET=1,0"},
		{Op: "set CCH mode", Cmd: "AT+CCHMODE=0"},
	}
	if err := atkit.Run(ctx, ch, steps...); err != nil {
		// The service may still run from before an agent restart (the
		// modem did not reboot): stop it and configure again.
		d.log.Info("CCH service seems to be running already; restarting it", "err", err)
		if serr := d.deferred(ctx, ch, "stop stale CCH service", "AT+CCHSTOP", "+CCHSTOP:", 10*time.Second); serr != nil {
			d.log.Debug("stop stale CCH service", "err", serr)
		}
		if err := atkit.Run(ctx, ch, steps...); err != nil {
			return d.modemErr("start CCH service", err)
		}
	}
	if err := d.deferred(ctx, ch, "start CCH service", "AT+CCHSTART", "+CCHSTART:", 120*time.Second); err != nil {
		return d.modemErr("start CCH service", err)
	}
	d.mu.Lock()
	d.started = true
	d.mu.Unlock()
	return nil
}

// claim reserves the lowest free session id.
func (d *Driver) claim() (*session, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i, s := range d.sessions {
		if s == nil {
			ns := newSession(d, i)
			d.sessions[i] = ns
			return ns, nil
		}
	}
	return nil, &sdk.NetError{Op: "dial", Session: -1, Kind: sdk.NetBusy, Text: fmt.Sprintf("all %d sessions are in use", len(d.sessions))}
}

// release frees a session's id once it has ended.
func (d *Driver) release(s *session) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if s.id < len(d.sessions) && d.sessions[s.id] == s {
		d.sessions[s.id] = nil
	}
}

func (d *Driver) session(id int) *session {
	d.mu.Lock()
	defer d.mu.Unlock()
	if id < 0 || id >= len(d.sessions) {
		return nil
	}
	return d.sessions[id]
}

// open runs the open script for one session: SNI and the SSL context, then
// AT+CCHOPEN and its deferred result.
func (d *Driver) open(ctx context.Context, ch *at.Channel, s *session, req sdk.DialRequest, clientType int) error {
	op := fmt.Sprintf("open session %d", s.id)
	if clientType == 2 {
		if err := d.selectSSLContext(ctx, ch, s, req, op); err != nil {
			return err
		}
	}
	wait := d.negotiateTime() + 15*time.Second
	if req.Timeout > 0 && req.Timeout < wait {
		wait = req.Timeout
	}
	// Registered before the command so that a quick result is not missed.
	w := ch.Expect(at.Prefix(fmt.Sprintf("+CCHOPEN: %d,", s.id)))
	defer w.Cancel()
	cmd := fmt.Sprintf("AT+CCHOPEN=%d,%s,%d,%d", s.id, atkit.Quote(req.Host), req.Port, clientType)
	if err := d.sendOpen(ctx, ch, s.id, cmd, op); err != nil {
		return err
	}
	line, err := d.awaitOpen(ctx, ch, s, w, wait, op)
	if err != nil {
		return err
	}
	_, code, ok := idAndCode(line, "+CCHOPEN:")
	if !ok {
		return &sdk.ModemError{Op: op, Code: -1, Text: "malformed result " + strconv.Quote(line)}
	}
	if code != 0 {
		return cchError("open", s.id, code)
	}
	s.markOpen()
	d.log.Info("session open", "session", s.id, "host", req.Host, "port", req.Port, "client_type", clientType)
	return nil
}

// selectSSLContext is the modem-TLS part of the open script for session s:
// SNI on or off in SSL context req.Profile, then that context for the
// session. op names the open in errors.
func (d *Driver) selectSSLContext(ctx context.Context, ch *at.Channel, s *session, req sdk.DialRequest, op string) error {
	d.mu.Lock()
	_, provisioned := d.bundles[req.Profile]
	d.mu.Unlock()
	if !provisioned {
		d.log.Warn("dialing with an SSL context this plugin did not provision", "session", s.id, "profile", req.Profile)
	}
	// The module sends the dialled host as SNI or nothing: it cannot
	// present another name.
	sni := 0
	if req.ServerName != "" {
		if !strings.EqualFold(req.ServerName, req.Host) {
			return &sdk.ModemError{Op: op, Code: -1, Text: fmt.Sprintf("server name %q differs from the dialled host %q: a SIMCom module can only send the host as SNI (use host-side TLS)", req.ServerName, req.Host)}
		}
		sni = 1
	}
	script := atkit.Script{Steps: []atkit.Step{
		{Op: "set SNI", Cmd: fmt.Sprintf(`AT+CSSLCFG="enableSNI",%d,%d`, req.Profile, sni), Optional: true},
		// The module forgets the session's context after every close
		// or failed open, so it is set before every AT+CCHOPEN.
		{Op: "select SSL context", Cmd: fmt.Sprintf("AT+CCHSSLCFG=%d,%d", s.id, req.Profile)},
	}, OnSkip: func(st atkit.Step, err error) {
		d.log.Warn("optional step failed (old firmware?)", "op", st.Op, "err", err)
	}}
	if err := script.Run(ctx, ch); err != nil {
		return d.modemErr(op, err)
	}
	return nil
}

// sendOpen sends cmd, the AT+CCHOPEN for session id, and waits for its
// immediate OK. A bare ERROR closes the slot and returns a
// *staleSlotError, so that Dial may try once more.
func (d *Driver) sendOpen(ctx context.Context, ch *at.Channel, id int, cmd, op string) error {
	cctx, cancel := context.WithTimeout(ctx, atkit.DefaultStepTimeout)
	_, err := ch.Command(cctx, cmd)
	cancel()
	if err == nil {
		return nil
	}
	var plain *at.Error
	if errors.As(err, &plain) && plain.Final == "ERROR" {
		// The modem may still hold this slot from a session whose
		// close was lost (a driver that died, a close that timed
		// out): it answers ERROR to every open until it is closed.
		d.log.Info("CCHOPEN refused; closing the slot in case the modem still holds it", "session", id)
		d.closeQuietly(ch, id)
		return &staleSlotError{cause: d.modemErr(op, &atkit.StepError{Op: "open", Cmd: cmd, Err: err})}
	}
	return d.modemErr(op, &atkit.StepError{Op: "open", Cmd: cmd, Err: err})
}

// awaitOpen waits up to wait for the deferred +CCHOPEN result of session s
// on w and returns its line, or an error naming op. When none comes the
// slot is closed.
func (d *Driver) awaitOpen(ctx context.Context, ch *at.Channel, s *session, w *at.Waiter, wait time.Duration, op string) (string, error) {
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	// A modem that reboots during the handshake never answers: the reboot
	// ends the claimed session, and that ends the wait.
	go func() {
		select {
		case <-s.ended:
			cancel()
		case <-wctx.Done():
		}
	}()
	line, err := w.Wait(wctx)
	if err == nil {
		return line, nil
	}
	select {
	case <-s.ended:
		return "", &sdk.ModemError{Op: op, Code: -1, Text: "the session ended during the handshake: " + s.endReason()}
	default:
	}
	// The handshake may still finish; close the slot so a late success
	// does not leave a session nobody owns.
	d.closeQuietly(ch, s.id)
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		return "", &sdk.TimeoutError{Op: op, After: wait}
	}
	return "", d.modemErr(op, err)
}

// closeQuietly closes a session slot whose state is unknown, ignoring the
// ERROR a modem answers for a slot that is not open.
func (d *Driver) closeQuietly(ch *at.Channel, id int) {
	ctx, cancel := context.WithTimeout(context.Background(), atkit.DefaultStepTimeout)
	defer cancel()
	_, _ = ch.Command(ctx, fmt.Sprintf("AT+CCHCLOSE=%d", id))
}

// session is one CCH session. Received frames and events are queued by the
// URC handlers and read by Recv; Send is used by one caller at a time.
type session struct {
	d  *Driver
	id int

	frames chan sdk.Frame // data and events, bounded by recvQueue
	ended  chan struct{}  // closed once the session is over
	// closing is closed when Close begins: from then on received data is
	// dropped instead of waiting for a reader that will not come (a
	// blocked delivery would stall the channel's dispatcher, and with it
	// the AT+CCHCLOSE that ends the session), and a Send waiting for
	// send reports returns.
	closing     chan struct{}
	closingOnce sync.Once
	endMu       sync.Mutex
	endErr      error // why it ended, for Send after the end; nil for a clean close
	endEv       sdk.SessionEvent
	done        bool
	open        bool

	sendMu   sync.Mutex // one Send at a time
	reports  chan int   // send report codes, buffered sendWindow
	inflight int        // chunks sent whose report has not arrived; owned by sendMu
}

func newSession(d *Driver, id int) *session {
	return &session{
		d:       d,
		id:      id,
		frames:  make(chan sdk.Frame, recvQueue),
		ended:   make(chan struct{}),
		closing: make(chan struct{}),
		reports: make(chan int, sendWindow*2),
	}
}

func (s *session) ID() int { return s.id }

func (s *session) markOpen() {
	s.endMu.Lock()
	s.open = true
	s.endMu.Unlock()
}

func (s *session) isOpen() bool {
	s.endMu.Lock()
	defer s.endMu.Unlock()
	return s.open && !s.done
}

// deliver queues received bytes. It blocks while the queue is full (see
// recvQueue) and gives up only when the session has ended or is closing.
func (s *session) deliver(p []byte) {
	select {
	case s.frames <- sdk.Frame{Data: p}:
	case <-s.ended:
	case <-s.closing:
	}
}

// sendReport hands a +CCHSEND report to the sender.
func (s *session) sendReport(code int) {
	select {
	case s.reports <- code:
	default:
		s.d.log.Warn("unexpected send report", "session", s.id, "code", code)
	}
}

// end finishes the session once: the event (if any) is queued after the data
// already received, then Recv returns io.EOF or err.
func (s *session) end(ev sdk.SessionEvent, err error) {
	s.endMu.Lock()
	if s.done {
		s.endMu.Unlock()
		return
	}
	s.done = true
	s.endErr = err
	s.endEv = ev
	if ev.Kind != 0 && s.endErr == nil {
		s.endErr = eventError(s.id, ev)
	}
	s.endMu.Unlock()
	if ev.Kind != 0 {
		// Wait for room rather than drop the event, but never for a reader
		// that has gone: a full queue nobody drains is abandoned after 5 s.
		t := time.NewTimer(5 * time.Second)
		select {
		case s.frames <- sdk.Frame{Event: &ev}:
		case <-t.C:
			s.d.log.Warn("session event dropped: nobody reads the session", "session", s.id, "event", ev.Kind)
		}
		t.Stop()
	}
	close(s.ended)
}

// endReason says why an ended session ended, for errors.
func (s *session) endReason() string {
	s.endMu.Lock()
	defer s.endMu.Unlock()
	switch {
	case s.endEv.Kind == 0:
		return "closed by the driver"
	case s.endEv.Detail != "":
		return s.endEv.Kind.String() + " (" + s.endEv.Detail + ")"
	}
	return s.endEv.Kind.String()
}

// Recv returns the next frame. After the last frame it returns io.EOF.
func (s *session) Recv(ctx context.Context) (sdk.Frame, error) {
	select {
	case f := <-s.frames:
		return f, nil
	default:
	}
	select {
	case f := <-s.frames:
		return f, nil
	case <-s.ended:
		// Frames queued before the end are still delivered.
		select {
		case f := <-s.frames:
			return f, nil
		default:
			return sdk.Frame{}, io.EOF
		}
	case <-ctx.Done():
		return sdk.Frame{}, ctx.Err()
	}
}

func (s *session) failed() error {
	s.endMu.Lock()
	defer s.endMu.Unlock()
	if !s.done {
		return nil
	}
	if s.endErr != nil {
		return s.endErr
	}
	return &sdk.NetError{Op: "send", Session: s.id, Kind: sdk.NetState, Text: "the session has ended"}
}

// Send writes p to the session in chunks of at most the model's limit. It
// returns when the modem accepted every chunk; a chunk's network result
// arrives later as a send report, and a failed report fails a later Send.
func (s *session) Send(ctx context.Context, p []byte) error {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	ch := s.d.channel()
	if ch == nil {
		return &sdk.SerialError{Op: "send", Err: "modem not open"}
	}
	for len(p) > 0 {
		if err := s.failed(); err != nil {
			return err
		}
		select {
		case <-s.closing:
			return fmt.Errorf("send on session %d: %w", s.id, sdk.ErrSessionClosed)
		default:
		}
		if err := s.waitReports(ctx, ch, sendWindow-1, s.closing); err != nil {
			return err
		}
		n := min(len(p), s.d.profile.MaxSend)
		cmd := fmt.Sprintf("AT+CCHSEND=%d,%d", s.id, n)
		cctx, cancel := context.WithTimeout(ctx, sendTimeout(n, s.d.config().Baud))
		_, err := ch.CommandPayload(cctx, cmd, p[:n])
		cancel()
		if err != nil {
			if ferr := s.failed(); ferr != nil {
				return ferr
			}
			return s.d.modemErr(fmt.Sprintf("send on session %d", s.id), err)
		}
		s.inflight++
		p = p[n:]
	}
	return nil
}

// sendTimeout allows a chunk's time on the line at the configured baud three
// times over, plus the module's own latency.
func sendTimeout(n, baud int) time.Duration {
	if baud <= 0 {
		baud = 115200
	}
	return 3*time.Duration(n*10)*time.Second/time.Duration(baud) + 10*time.Second
}

// waitReports waits until at most max chunks await their send report. A
// missing report is not trusted to mean failure: after the report timeout the
// modem is asked how much it has not sent yet. It gives up when abort is
// closed (nil never is).
func (s *session) waitReports(ctx context.Context, ch *at.Channel, max int, abort <-chan struct{}) error {
	for s.inflight > max {
		t := time.NewTimer(s.d.reportTimeout)
		select {
		case code := <-s.reports:
			t.Stop()
			s.inflight--
			if code != 0 {
				return cchError("send", s.id, code)
			}
		case <-s.ended:
			t.Stop()
			return s.failed()
		case <-abort:
			t.Stop()
			return fmt.Errorf("send on session %d: %w", s.id, sdk.ErrSessionClosed)
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
			unsent, err := s.unsent(ctx, ch)
			if err != nil {
				return s.d.modemErr(fmt.Sprintf("send on session %d", s.id), err)
			}
			if unsent == 0 {
				s.d.log.Warn("no send report within the timeout; the modem says everything was sent", "session", s.id)
				s.inflight = 0
			}
		}
	}
	return nil
}

// unsent asks AT+CCHSEND? how many bytes of this session await sending.
func (s *session) unsent(ctx context.Context, ch *at.Channel) (int, error) {
	cctx, cancel := context.WithTimeout(ctx, atkit.DefaultStepTimeout)
	defer cancel()
	r, err := ch.Command(cctx, "AT+CCHSEND?", at.WithResponsePrefix("+CCHSEND:"))
	if err != nil {
		return 0, err
	}
	v, ok := field(r, "+CCHSEND:")
	if !ok {
		return 0, fmt.Errorf("AT+CCHSEND?: no +CCHSEND line in %q", r.Lines)
	}
	parts := splitFields(v) // 0,<unsent0>,1,<unsent1>
	for i := 0; i+1 < len(parts); i += 2 {
		if parts[i] == strconv.Itoa(s.id) {
			return strconv.Atoi(parts[i+1])
		}
	}
	return 0, fmt.Errorf("AT+CCHSEND?: session %d missing in %q", s.id, v)
}

// Close waits (briefly) for outstanding send reports so the last bytes reach
// the network, then closes the session with AT+CCHCLOSE. Closing an ended
// session is not an error.
func (s *session) Close(ctx context.Context) error {
	defer s.d.release(s)
	s.closingOnce.Do(func() { close(s.closing) })
	ch := s.d.channel()
	if !s.isOpen() || ch == nil {
		s.end(sdk.SessionEvent{}, nil)
		return nil
	}
	s.sendMu.Lock()
	fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	if err := s.waitReports(fctx, ch, 0, nil); err != nil {
		s.d.log.Debug("flush before close", "session", s.id, "err", err)
	}
	cancel()
	s.sendMu.Unlock()
	prefix := fmt.Sprintf("+CCHCLOSE: %d,", s.id)
	w := ch.Expect(at.Prefix(prefix))
	defer w.Cancel()
	cctx, cancel := context.WithTimeout(ctx, atkit.DefaultStepTimeout)
	_, err := ch.Command(cctx, fmt.Sprintf("AT+CCHCLOSE=%d", s.id))
	cancel()
	s.end(sdk.SessionEvent{}, nil)
	if err != nil {
		if errors.Is(err, at.ErrError) {
			return nil // the modem had closed it already (peer close race)
		}
		return s.d.modemErr(fmt.Sprintf("close session %d", s.id), err)
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	line, err := w.Wait(wctx)
	if err != nil {
		return s.d.modemErr(fmt.Sprintf("close session %d", s.id), err)
	}
	if _, code, ok := idAndCode(line, "+CCHCLOSE:"); ok && code != 0 {
		return cchError("close", s.id, code)
	}
	return nil
}

func (d *Driver) channel() *at.Channel {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.ch
}

var _ sdk.SecureTransport = (*Driver)(nil)
