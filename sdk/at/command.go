package at

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Response is what a command produced.
type Response struct {
	// Lines are the command's intermediate lines in arrival order, as the
	// modem sent them (spacing untouched, terminators removed): every
	// non-blank line between sending and the final result that no waiter
	// or URC handler took, without the echo of the command.
	Lines []string
	// Final is the final result line as the modem sent it ("OK",
	// "+CME ERROR: SIM busy", ...).
	Final string
}

// CommandOption adjusts one Command or CommandPayload call.
type CommandOption func(*cmdOptions)

type cmdOptions struct {
	claims     []string // normalized prefixes
	secret     bool
	finalsOK   []string // extra successful final results (WithFinalOK)
	finalsFail []string // extra failing final results (WithFinalError)
	promptLine string   // the prompt is this line, not '>' (WithPromptLine)
}

// WithFinalOK declares lines that end this command successfully, like OK,
// in addition to the standard final results. Use it for commands that a
// modem ends with a result of its own and no OK, such as Quectel's
// AT+QSSLSEND and AT+QISEND, which end with "SEND OK" after the payload:
//
//	resp, err := ch.CommandPayload(ctx, "AT+QSSLSEND=0,5", data,
//		at.WithFinalOK("SEND OK"), at.WithFinalError("SEND FAIL"))
//
// A line matches when it equals one of lines once leading and trailing
// spaces are removed (case-sensitive). Response.Final is the line as the
// modem sent it. The standard final results still end the command too. The
// lines are final only for this command: while it is not in flight they are
// ordinary lines. The option may be given more than once.
func WithFinalOK(lines ...string) CommandOption {
	return func(o *cmdOptions) { o.finalsOK = appendTrimmed(o.finalsOK, lines) }
}

// WithFinalError declares lines that end this command with a failure, like
// ERROR, in addition to the standard final results: the command returns its
// Response and an *Error whose Final is the line (matching ErrError), so
// errors.As tells "SEND FAIL" from "ERROR". Matching is as for WithFinalOK;
// a line declared by both is a failure.
func WithFinalError(lines ...string) CommandOption {
	return func(o *cmdOptions) { o.finalsFail = appendTrimmed(o.finalsFail, lines) }
}

func appendTrimmed(dst, lines []string) []string {
	for _, l := range lines {
		if t := strings.TrimSpace(l); t != "" {
			dst = append(dst, t)
		}
	}
	return dst
}

// WithPromptLine makes CommandPayload wait for a whole line as its prompt
// instead of '>': the modem answers the command with that line, then takes
// the payload raw, then reports and ends the command as usual. Quectel's
// AT+QFUPL file upload works so, with "CONNECT":
//
//	resp, err := ch.CommandPayload(ctx, `AT+QFUPL="ca.pem",1200,10`, pem,
//		at.WithPromptLine("CONNECT"))
//	// resp.Lines holds "+QFUPL: 1200,3e5a", resp.Final is "OK".
//
// A line is the prompt when, without leading and trailing spaces, it equals
// line or starts with line followed by a space ("CONNECT 115200"). It is
// the prompt only for the command in flight and only until it has come;
// it is not a final result then, and it does not appear in Response.Lines.
// A '>' is then an ordinary character. Everything else about CommandPayload
// holds: a failing final result instead of the prompt returns the modem's
// error and the payload is not written, the command slot is held from the
// command to its final result, URCs keep being dispatched, and a caller
// whose context ends before the prompt leaves the channel to write the
// payload when the prompt comes. An empty line keeps the > prompt.
// Command ignores this option.
func WithPromptLine(line string) CommandOption {
	t := strings.TrimSpace(line)
	return func(o *cmdOptions) { o.promptLine = t }
}

// WithSecret marks the command's parameters and payload as secret (a key
// password in AT+CSSLCFG="keypwd",..., a private key downloaded with
// AT+CCERTDOWN): errors, log lines and the trace show the command only up
// to its '=' followed by "<redacted>", and the trace shows the payload's
// length but not its bytes. The modem still receives the command as given.
func WithSecret() CommandOption {
	return func(o *cmdOptions) { o.secret = true }
}

// redacted is cmd as errors and logs show a secret command:
// `AT+CSSLCFG="keypwd",0,"pw"` becomes "AT+CSSLCFG=<redacted>".
func redacted(cmd string) string {
	if i := strings.IndexByte(cmd, '='); i >= 0 {
		return cmd[:i+1] + "<redacted>"
	}
	return cmd
}

// WithResponsePrefix makes lines starting with prefix (spacing tolerant, as
// for Handle) intermediate lines of this command while it is in flight, even
// if a URC handler is registered for that prefix. Use it for read and test
// forms whose answer shares a prefix with a URC, such as "AT+CCHSEND?"
// (+CCHSEND: is also the send report). It may be given more than once.
// Waiters still see the line first, and binary headers are always framing.
func WithResponsePrefix(prefix string) CommandOption {
	np := normalize(prefix)
	return func(o *cmdOptions) {
		if np != "" {
			o.claims = append(o.claims, np)
		}
	}
}

// result is how the reader hands a finished command to its caller.
type result struct {
	resp *Response
	err  error
}

// pending is the command in flight. The reader reads and updates it under
// Channel.mu; the caller only creates it and waits on its channels.
type pending struct {
	cmd        string
	shown      string // what errors, logs and the trace show; "" means cmd
	secret     bool   // the payload is secret too (WithSecret)
	claimed    []string
	finalsOK   []string // see WithFinalOK
	finalsFail []string // see WithFinalError
	wantPrompt bool
	promptLine string // the prompt is this line; "" means '>'
	prompted   bool
	promptCh   chan struct{} // buffered 1: the reader never blocks
	result     chan result   // buffered 1: the reader never blocks
	lines      []string
	// marker is set for a resync probe: the normalized prefix of the
	// probe's own intermediate line. Finals before it are stale.
	marker     string
	markerSeen bool
	// settling means run handed the exchange (and the command slot) to
	// settle; the caller must not release the slot.
	settling bool
}

// traceForm is what the trace shows for the command line, nil meaning the
// bytes written.
func (p *pending) traceForm() []byte {
	if p.shown == "" || p.shown == p.cmd {
		return nil
	}
	return []byte(p.shown + "\r")
}

// name is the command as errors and logs show it.
func (p *pending) name() string {
	if p.shown != "" {
		return p.shown
	}
	return p.cmd
}

// extraFinal classifies line against the command's own final results
// (WithFinalOK, WithFinalError).
func (p *pending) extraFinal(line string) finalKind {
	if len(p.finalsOK) == 0 && len(p.finalsFail) == 0 {
		return notFinal
	}
	t := strings.TrimSpace(line)
	switch {
	case slices.Contains(p.finalsFail, t):
		return finalFailed
	case slices.Contains(p.finalsOK, t):
		return finalOK
	}
	return notFinal
}

// isPromptLine reports whether line is the prompt of a command that waits
// for a line prompt (WithPromptLine) and has not had it yet.
func (p *pending) isPromptLine(line string) bool {
	if !p.wantPrompt || p.prompted || p.promptLine == "" {
		return false
	}
	t := strings.TrimSpace(line)
	rest, ok := strings.CutPrefix(t, p.promptLine)
	return ok && (rest == "" || rest[0] == ' ')
}

// promptName is the prompt as errors show it.
func (p *pending) promptName() string {
	if p.promptLine != "" {
		return strconv.Quote(p.promptLine) + " prompt"
	}
	return "> prompt"
}

func (p *pending) claims(line string) bool {
	for _, np := range p.claimed {
		if _, ok := matchNormalized(line, np); ok {
			return true
		}
	}
	return false
}

// probe is a harmless query whose answer carries an identifiable line.
type probe struct {
	cmd    string
	marker string // normalized
}

// probes are tried in order; one whose command was itself abandoned is
// skipped, because its late answer would carry the same marker. Neither
// +CMEE: nor +CSCS: is ever sent unsolicited.
var probes = []probe{
	{cmd: "AT+CMEE?", marker: "+CMEE:"},
	{cmd: "AT+CSCS?", marker: "+CSCS:"},
}

// Command writes cmd+"\r" and waits for its final result.
//
// cmd is the command without terminator, e.g. "AT+CSQ"; it must not contain
// CR or LF. Commands are serialised: a caller waits for the one in flight,
// honouring ctx while it waits.
//
// On OK it returns the intermediate lines and a nil error. On a failing
// final result it returns the Response together with *Error, *CMEError or
// *CMSError (all match ErrError). If ctx ends first it returns an error
// wrapping ctx.Err() and naming cmd; the channel stays usable and the
// command's late result is kept away from later commands (see the package
// documentation on resynchronisation). If the channel stops it returns an
// error matching ErrClosed.
//
// When a previous command was abandoned, Command first sends a probe to
// resynchronise; that exchange is bounded by ctx too.
func (c *Channel) Command(ctx context.Context, cmd string, opts ...CommandOption) (*Response, error) {
	return c.exchange(ctx, cmd, nil, false, opts)
}

// CommandPayload writes cmd+"\r", waits for the ">" prompt, writes exactly
// payload (raw, no terminator), then waits for the final result like
// Command. The prompt is recognised as '>' at the start of a line, with or
// without one following space ("\r\n>", "\r\n> ", ">"); with
// WithPromptLine it is a whole line such as "CONNECT" instead. Commands
// that end with a result of their own after the payload ("SEND OK") declare
// it with WithFinalOK and WithFinalError.
//
// If the modem answers a final result instead of the prompt the payload is
// not written: a failing result is returned as by Command, and an OK
// without prompt returns an error matching ErrNoPrompt. payload is copied,
// so the caller may reuse it as soon as CommandPayload returns, even after a
// timeout.
//
// A caller whose context ends while waiting for the prompt does not leave
// the modem waiting for payload bytes: the channel writes the payload
// itself when the prompt comes and waits for the final result before the
// next command goes out (see the package documentation).
func (c *Channel) CommandPayload(ctx context.Context, cmd string, payload []byte, opts ...CommandOption) (*Response, error) {
	return c.exchange(ctx, cmd, payload, true, opts)
}

func (c *Channel) exchange(ctx context.Context, cmd string, payload []byte, wantPrompt bool, opts []CommandOption) (*Response, error) {
	var co cmdOptions
	for _, o := range opts {
		o(&co)
	}
	shown := cmd
	if co.secret {
		shown = redacted(cmd)
	}
	if cmd == "" || strings.ContainsAny(cmd, "\r\n") {
		return nil, fmt.Errorf("at: command %q is empty or contains CR/LF", shown)
	}
	select {
	case c.slot <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("at: %s: waiting for the command in flight: %w", shown, ctx.Err())
	case <-c.done:
		return nil, c.stoppedErr(shown)
	}
	var p *pending
	defer func() {
		if p == nil || !p.settling {
			<-c.slot
		}
	}()

	if err := c.resyncIfNeeded(ctx); err != nil {
		return nil, fmt.Errorf("at: %s: resynchronising after an abandoned command: %w", shown, err)
	}
	var body []byte
	if wantPrompt {
		body = append([]byte(nil), payload...)
	}
	p = &pending{
		cmd:        cmd,
		shown:      shown,
		secret:     co.secret,
		claimed:    co.claims,
		finalsOK:   co.finalsOK,
		finalsFail: co.finalsFail,
		wantPrompt: wantPrompt,
		promptCh:   make(chan struct{}, 1),
		result:     make(chan result, 1),
	}
	if wantPrompt {
		p.promptLine = co.promptLine
	}
	return c.run(ctx, p, body)
}

// run performs one exchange for the slot holder.
func (c *Channel) run(ctx context.Context, p *pending, payload []byte) (*Response, error) {
	c.mu.Lock()
	c.pending = p
	c.mu.Unlock()

	line := make([]byte, 0, len(p.cmd)+1)
	line = append(line, p.cmd...)
	line = append(line, '\r')
	if accepted, err := c.send(ctx, writeReq{b: line, shown: p.traceForm()}); err != nil {
		if !accepted {
			// Nothing reached the modem: no late answer can follow.
			c.mu.Lock()
			if c.pending == p {
				c.pending = nil
			}
			c.mu.Unlock()
			return nil, c.failed(p, "sending the command", err)
		}
		if p.wantPrompt && !errors.Is(err, errStopped) && ctx.Err() != nil {
			return c.handOff(ctx, p, payload, "sending the command")
		}
		return c.abandon(p, "sending the command", err)
	}

	if p.wantPrompt {
		select {
		case <-p.promptCh:
		case r := <-p.result:
			return r.resp, r.err
		case <-ctx.Done():
			return c.handOff(ctx, p, payload, "waiting for the "+p.promptName())
		case <-c.done:
			return c.stopped(p)
		}
		select {
		case r := <-p.result:
			return r.resp, r.err // the modem gave up before we wrote
		default:
		}
		if len(payload) > 0 {
			if _, err := c.writePayload(ctx, payload, p.secret); err != nil {
				return c.abandon(p, "writing the payload", err)
			}
		}
	}

	select {
	case r := <-p.result:
		return r.resp, r.err
	case <-ctx.Done():
		return c.abandon(p, "waiting for the final result", ctx.Err())
	case <-c.done:
		return c.stopped(p)
	}
}

// handOff passes a payload exchange whose caller's context ended to settle.
// The modem has the command: when its prompt comes it will take the next
// len(payload) bytes, whoever writes them. The channel writes them itself,
// so they are not the next command's bytes, and keeps the command slot
// until the exchange is over.
func (c *Channel) handOff(ctx context.Context, p *pending, payload []byte, stage string) (*Response, error) {
	c.mu.Lock()
	if c.noSettle {
		c.mu.Unlock() // Close has begun: nobody will wait for a settler
		return c.abandon(p, stage, ctx.Err())
	}
	c.settlers.Add(1)
	c.mu.Unlock()
	p.settling = true
	go c.settle(p, payload)
	return nil, c.failed(p, stage, ctx.Err())
}

// settleWait bounds each stage of settling an exchange whose caller left:
// the prompt, the payload write, the final result.
const settleWait = 5 * time.Second

// settle finishes a payload exchange after its caller's context ended while
// it waited for the prompt: it writes the payload when the prompt comes and
// waits for the final result, so the modem is not left waiting for payload
// bytes and the channel stays in sync. It holds the command slot and
// releases it when done. A modem that stays silent is abandoned as usual.
func (c *Channel) settle(p *pending, payload []byte) {
	defer c.settlers.Done()
	defer func() { <-c.slot }()
	t := time.NewTimer(settleWait)
	defer t.Stop()
	select {
	case <-p.promptCh:
	case <-p.result:
		return // refused instead of prompting: nothing is owed
	case <-t.C:
		c.abandon(p, "waiting for the "+p.promptName()+" after the caller left", context.DeadlineExceeded)
		return
	case <-c.done:
		c.stopped(p)
		return
	}
	wctx, cancel := context.WithTimeout(context.Background(), settleWait)
	_, err := c.writePayload(wctx, payload, p.secret)
	cancel()
	if err != nil {
		c.abandon(p, "writing the payload after the caller left", err)
		return
	}
	t.Reset(settleWait)
	select {
	case <-p.result:
		c.log.Debug("settled a payload exchange its caller left", "op", "command", "cmd", p.name(), "bytes", len(payload))
	case <-t.C:
		c.abandon(p, "waiting for the final result after the caller left", context.DeadlineExceeded)
	case <-c.done:
		c.stopped(p)
	}
}

// Unstick writes n carriage returns. A modem that a previous owner of the
// port left in the middle of a payload command (AT+CCHSEND, AT+CCERTDOWN:
// the command was sent, the payload never was, and the owner died) takes
// every byte that follows as payload and answers nothing; the filler
// completes that payload, and carriage returns left over are empty lines,
// which modems ignore. The payload so completed is garbage: the caller must
// treat whatever that command wrote (a certificate file) as suspect. The
// channel resynchronises before the next command.
func (c *Channel) Unstick(ctx context.Context, n int) error {
	select {
	case c.slot <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("at: unstick: waiting for the command in flight: %w", ctx.Err())
	case <-c.done:
		return c.stoppedErr("unstick")
	}
	defer func() { <-c.slot }()
	filler := make([]byte, n)
	for i := range filler {
		filler[i] = '\r'
	}
	_, err := c.write(ctx, filler, true)
	c.mu.Lock()
	c.outOfSync = true
	c.mu.Unlock()
	if err != nil {
		return fmt.Errorf("at: unstick: %w", err)
	}
	return nil
}

// errStopped marks a write that found the channel stopped.
var errStopped = errors.New("stopped")

// write hands b to the writer goroutine and waits for the outcome. accepted
// reports whether the writer took b, i.e. whether any of it may have
// reached the modem.
func (c *Channel) write(ctx context.Context, b []byte, payload bool) (accepted bool, err error) {
	return c.send(ctx, writeReq{b: b, payload: payload})
}

// writePayload writes a payload; a secret one is traced by its length only.
func (c *Channel) writePayload(ctx context.Context, b []byte, secret bool) (accepted bool, err error) {
	return c.send(ctx, writeReq{b: b, payload: true, secret: secret})
}

// send is write with the trace options of req.
func (c *Channel) send(ctx context.Context, req writeReq) (accepted bool, err error) {
	req.done = make(chan error, 1)
	select {
	case c.writeReq <- req:
	case <-ctx.Done():
		return false, ctx.Err()
	case <-c.done:
		return false, errStopped
	}
	select {
	case err := <-req.done:
		if err != nil {
			return true, fmt.Errorf("write: %w", err)
		}
		return true, nil
	case <-ctx.Done():
		return true, ctx.Err()
	case <-c.done:
		return true, errStopped
	}
}

// failed builds the error of an exchange that ended on the caller's side.
func (c *Channel) failed(p *pending, stage string, cause error) error {
	if errors.Is(cause, errStopped) {
		return c.stoppedErr(p.name())
	}
	return fmt.Errorf("at: %s: %s: %w", p.name(), stage, cause)
}

// abandon gives up on p after its command may have reached the modem. If
// the reader completed p meanwhile, that result wins. Otherwise the channel
// is marked out of sync so that the next command resynchronises first.
func (c *Channel) abandon(p *pending, stage string, cause error) (*Response, error) {
	c.mu.Lock()
	if c.pending != p {
		c.mu.Unlock()
		r := <-p.result // completed under mu before pending was cleared
		return r.resp, r.err
	}
	c.pending = nil
	if !errors.Is(cause, errStopped) {
		c.outOfSync = true
		c.owed++
		c.abandoned = append(c.abandoned, abandonedCmd{cmd: p.cmd, shown: p.name()})
	}
	c.mu.Unlock()
	if !errors.Is(cause, errStopped) {
		c.log.Warn("abandoned an AT command; the channel will resynchronise", "op", "command", "cmd", p.name(), "stage", stage, "err", cause)
	}
	return nil, c.failed(p, stage, cause)
}

// stopped ends an exchange because the reader stopped, unless the result
// arrived just before.
func (c *Channel) stopped(p *pending) (*Response, error) {
	select {
	case r := <-p.result:
		return r.resp, r.err
	default:
	}
	c.mu.Lock()
	if c.pending == p {
		c.pending = nil
	}
	c.mu.Unlock()
	return nil, c.stoppedErr(p.name())
}

// completeLocked finishes the command in flight with its final result.
// c.mu must be held.
func (c *Channel) completeLocked(p *pending, line string, kind finalKind) {
	var err error
	switch kind {
	case finalOK, finalConnect:
		if p.wantPrompt && !p.prompted {
			err = fmt.Errorf("%w (command %s waited for the %s, final %q)", ErrNoPrompt, p.name(), p.promptName(), line)
		}
	default:
		err = finalError(p.name(), line, kind)
	}
	c.pending = nil
	p.result <- result{resp: &Response{Lines: p.lines, Final: line}, err: err}
}

// resyncIfNeeded runs a probe exchange when an earlier command was
// abandoned. The caller holds the slot.
func (c *Channel) resyncIfNeeded(ctx context.Context) error {
	c.mu.Lock()
	if !c.outOfSync {
		c.mu.Unlock()
		return nil
	}
	pr := c.chooseProbeLocked()
	c.mu.Unlock()

	p := &pending{
		cmd:      pr.cmd,
		marker:   pr.marker,
		promptCh: make(chan struct{}, 1),
		result:   make(chan result, 1),
	}
	c.log.Debug("resynchronising", "op", "resync", "cmd", pr.cmd)
	if _, err := c.run(ctx, p, nil); err != nil && !errors.Is(err, ErrError) {
		// A modem error can only complete a probe after its marker line,
		// so it proves sync as well as OK does; anything else does not.
		return err
	}
	c.mu.Lock()
	c.outOfSync = false
	c.owed = 0
	c.abandoned = nil
	c.mu.Unlock()
	c.log.Info("AT channel resynchronised", "op", "resync", "cmd", pr.cmd)
	return nil
}

// chooseProbeLocked picks the first probe whose command was not abandoned
// since the last sync; if all were, the one not used last. c.mu must be
// held.
func (c *Channel) chooseProbeLocked() probe {
	for k, pr := range probes {
		clash := false
		for _, a := range c.abandoned {
			if commandName(a.cmd) == commandName(pr.cmd) {
				clash = true
				break
			}
		}
		if !clash {
			c.lastProbe = k
			return pr
		}
	}
	c.lastProbe = (c.lastProbe + 1) % len(probes)
	return probes[c.lastProbe]
}

// commandName is the command without its parameters or query suffix,
// upper-cased: "at+cmee=2" -> "AT+CMEE".
func commandName(cmd string) string {
	if i := strings.IndexAny(cmd, "=?"); i >= 0 {
		cmd = cmd[:i]
	}
	return strings.ToUpper(strings.TrimSpace(cmd))
}
