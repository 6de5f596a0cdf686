package at

import (
	"bytes"
	"slices"
	"time"
)

// parseState is the framing state. Only the reader goroutine touches it.
type parseState struct {
	line      []byte // the current line, without terminator
	dropping  bool   // the current line exceeded maxLine; skip to CR/LF
	dropped   int    // bytes skipped of the current overlong line
	skipSpace bool   // a '>' prompt was just taken; one space may follow
	inBinary  bool   // bin holds a payload being read
	bin       binState
}

// binState is a binary payload being read raw after its header line.
type binState struct {
	entry  *handlerEntry
	header string
	at     time.Time
	buf    []byte
	got    int
	// skipLF is set when the header ended in CR: the LF of its CR LF is
	// framing, not the first payload byte.
	skipLF bool
}

// add appends a piece of the current line, switching to dropping mode when
// the line grows past max.
func (ps *parseState) add(b []byte, max int) {
	if ps.dropping {
		ps.dropped += len(b)
		return
	}
	if len(ps.line)+len(b) > max {
		ps.dropping = true
		ps.dropped = len(ps.line) + len(b)
		ps.line = ps.line[:0]
		return
	}
	ps.line = append(ps.line, b...)
}

// abortBinary reports a payload cut short by the reader stopping.
func (ps *parseState) abortBinary(c *Channel) {
	if !ps.inBinary {
		return
	}
	c.log.Warn("port stopped in the middle of a binary payload; payload dropped",
		"op", "read", "line", ps.bin.header, "bytes", ps.bin.got, "want", len(ps.bin.buf))
	ps.inBinary = false
	ps.bin = binState{}
}

// parse consumes one chunk read from the port. Lines end at CR or LF (CR LF,
// bare CR, bare LF); blank lines are skipped; a '>' at the start of a line
// is the prompt when the command in flight waits for one; after a binary
// header exactly the announced number of bytes is copied raw.
func (c *Channel) parse(b []byte) {
	ps := &c.ps
	for len(b) > 0 {
		if ps.inBinary {
			bs := &ps.bin
			if bs.skipLF {
				bs.skipLF = false
				if b[0] == '\n' {
					b = b[1:]
					continue
				}
			}
			n := copy(bs.buf[bs.got:], b)
			bs.got += n
			b = b[n:]
			if bs.got == len(bs.buf) {
				ps.inBinary = false
				c.deliverBinary(bs)
				ps.bin = binState{}
			}
			continue
		}
		if ps.skipSpace {
			ps.skipSpace = false
			if b[0] == ' ' {
				b = b[1:]
				continue
			}
		}
		if b[0] == '>' && len(ps.line) == 0 && !ps.dropping && c.takePrompt() {
			ps.skipSpace = true
			b = b[1:]
			continue
		}
		i := bytes.IndexAny(b, "\r\n")
		if i < 0 {
			ps.add(b, c.opt.maxLine)
			return
		}
		ps.add(b[:i], c.opt.maxLine)
		cr := b[i] == '\r'
		b = b[i+1:]
		c.endLine(cr)
	}
}

// endLine finishes the current line; cr tells whether it ended in CR.
func (c *Channel) endLine(cr bool) {
	ps := &c.ps
	if ps.dropping {
		c.log.Warn("dropped an overlong line", "op", "read", "bytes", ps.dropped, "max", c.opt.maxLine)
		c.tr.dropped(ps.dropped)
		ps.dropping = false
		ps.dropped = 0
		ps.line = ps.line[:0]
		return
	}
	if isBlank(ps.line) {
		ps.line = ps.line[:0]
		return
	}
	line := string(ps.line)
	ps.line = ps.line[:0]
	c.route(line, cr)
}

func isBlank(b []byte) bool {
	for _, ch := range b {
		if ch != ' ' && ch != '\t' {
			return false
		}
	}
	return true
}

// takePrompt reports whether the command in flight was waiting for a '>'
// prompt (not a line prompt, see WithPromptLine), and if so signals it.
func (c *Channel) takePrompt() bool {
	c.mu.Lock()
	p := c.pending
	ok := p != nil && p.wantPrompt && !p.prompted && p.promptLine == ""
	if ok {
		p.prompted = true
		p.promptCh <- struct{}{}
	}
	c.mu.Unlock()
	if ok {
		c.tr.prompt()
	}
	return ok
}

// deliverBinary queues a complete binary URC for its handler.
func (c *Channel) deliverBinary(bs *binState) {
	c.tr.payload(bs.buf)
	c.enqueue(dispatchItem{fn: bs.entry.h, entry: bs.entry, urc: URC{Line: bs.header, Payload: bs.buf, At: bs.at}})
}

// route decides who gets a complete, non-blank line. The order is the one
// documented in the package comment. c.mu is taken once and released on
// every path by route itself, so the steps below see one consistent view
// of the command in flight, the waiters and the handlers.
func (c *Channel) route(line string, cr bool) {
	now := time.Now()
	c.mu.Lock()
	p := c.pending
	if p != nil && line == p.cmd {
		c.mu.Unlock()
		c.tr.modem(p.name())
		return // echo (ATE1)
	}
	if shown, ok := c.abandonedEchoLocked(line); ok {
		c.mu.Unlock()
		c.tr.modem(shown)
		c.log.Debug("dropped the late echo of an abandoned command", "op", "resync", "line", shown)
		return
	}
	// Traced under mu so the echo checks above and the routing below see
	// the same command in flight; the tracer never takes mu.
	c.tr.modem(line)
	if p != nil && p.isPromptLine(line) {
		p.prompted = true
		p.promptCh <- struct{}{}
		c.mu.Unlock()
		return
	}
	if e, n, ok := c.binaryHeaderLocked(line); ok {
		c.mu.Unlock()
		c.startBinary(binState{entry: e, header: line, at: now, buf: make([]byte, n), skipLF: cr})
		return
	}
	kind := classifyFinal(line)
	if p != nil {
		switch c.offerFinalLocked(p, line, kind) {
		case lineTaken:
			c.mu.Unlock()
			return
		case lineStale:
			c.mu.Unlock()
			c.log.Debug("discarded a stale final result while resynchronising", "op", "resync", "line", line)
			return
		}
		if p.marker != "" {
			p = nil // anything else during a probe is routed as if idle
		}
	}
	c.countLateFinalLocked(kind)
	if c.deliverToWaiterLocked(line) {
		c.mu.Unlock()
		return
	}
	if p != nil && p.claims(line) {
		p.lines = append(p.lines, line)
		c.mu.Unlock()
		return
	}
	if e := c.textHandlerLocked(line); e != nil {
		c.mu.Unlock()
		c.enqueue(dispatchItem{fn: e.h, entry: e, urc: URC{Line: line, At: now}})
		return
	}
	if p != nil {
		p.lines = append(p.lines, line)
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	if c.opt.unsolicited != nil {
		c.enqueue(dispatchItem{fn: c.opt.unsolicited, urc: URC{Line: line, At: now}})
		return
	}
	c.log.Debug("dropped an unsolicited line", "op", "read", "line", line)
}

// abandonedEchoLocked reports whether line is the late echo of a command
// abandoned since the channel went out of sync, and how that command is
// shown. c.mu must be held.
func (c *Channel) abandonedEchoLocked(line string) (shown string, ok bool) {
	if !c.outOfSync {
		return "", false
	}
	i := slices.IndexFunc(c.abandoned, func(a abandonedCmd) bool { return a.cmd == line })
	if i < 0 {
		return "", false
	}
	return c.abandoned[i].shown, true
}

// startBinary begins reading the payload announced by a binary header, or
// delivers it at once when it is empty.
func (c *Channel) startBinary(bs binState) {
	if len(bs.buf) == 0 {
		c.deliverBinary(&bs)
		return
	}
	c.ps.bin = bs
	c.ps.inBinary = true
}

// finalOffer is what the command in flight made of a line offered to it.
type finalOffer int

const (
	lineNotTaken finalOffer = iota // route the line on
	lineTaken                      // it completed the command, or was a probe's marker
	lineStale                      // a final result before the probe's marker: discard it
)

// offerFinalLocked offers line, classified as kind, to the command in
// flight p. A final result, standard or declared by p (WithFinalOK,
// WithFinalError), completes an ordinary command; a resync probe
// first waits for its marker line, and treats finals before it as stale.
// c.mu must be held.
func (c *Channel) offerFinalLocked(p *pending, line string, kind finalKind) finalOffer {
	if p.marker == "" {
		if kind == notFinal {
			kind = p.extraFinal(line)
		}
		if kind == notFinal {
			return lineNotTaken
		}
		c.completeLocked(p, line, kind)
		return lineTaken
	}
	switch {
	case kind != notFinal && !p.markerSeen:
		return lineStale
	case kind != notFinal:
		c.completeLocked(p, line, kind)
		return lineTaken
	case !p.markerSeen:
		if _, ok := matchNormalized(line, p.marker); ok {
			p.markerSeen = true
			return lineTaken
		}
	}
	return lineNotTaken
}

// countLateFinalLocked counts a final result received while idle against
// the abandoned commands, and puts the channel back in sync once all of
// them are accounted for. c.mu must be held.
func (c *Channel) countLateFinalLocked(kind finalKind) {
	if c.pending == nil && c.owed > 0 && (kind == finalOK || kind == finalFailed || kind == finalCME || kind == finalCMS) {
		// Each abandoned command produces at most one final result and the
		// modem answers in order, so once all of them are accounted for
		// while idle the next final belongs to the next command.
		c.owed--
		if c.owed == 0 {
			c.outOfSync = false
			c.abandoned = nil
			c.log.Debug("late results of abandoned commands received; back in sync", "op", "resync")
		}
	}
}

// deliverToWaiterLocked hands line to the first waiter that matches it,
// removing that waiter, and reports whether there was one. c.mu must be
// held.
func (c *Channel) deliverToWaiterLocked(line string) bool {
	for i, w := range c.waiters {
		if w.match(line) {
			c.waiters = slices.Delete(c.waiters, i, i+1)
			w.deliver(line)
			return true
		}
	}
	return false
}

// binaryHeaderLocked finds the binary registration for line, if line is a
// valid header within the size cap. c.mu must be held.
func (c *Channel) binaryHeaderLocked(line string) (*handlerEntry, int, bool) {
	var best *handlerEntry
	for _, e := range c.handlers {
		if e.length == nil {
			continue
		}
		if _, ok := matchNormalized(line, e.prefix); ok && (best == nil || len(e.prefix) >= len(best.prefix)) {
			best = e
		}
	}
	if best == nil {
		return nil, 0, false
	}
	n, ok := best.length(line)
	if !ok || n < 0 {
		return nil, 0, false
	}
	if n > c.opt.maxBinary {
		c.log.Error("binary URC header announces more than the cap; routing it as a line",
			"op", "read", "line", line, "bytes", n, "max", c.opt.maxBinary)
		return nil, 0, false
	}
	return best, n, true
}

// textHandlerLocked finds the line handler with the longest matching
// prefix; among equal prefixes the latest registration wins. c.mu must be
// held.
func (c *Channel) textHandlerLocked(line string) *handlerEntry {
	var best *handlerEntry
	for _, e := range c.handlers {
		if e.length != nil {
			continue
		}
		if _, ok := matchNormalized(line, e.prefix); ok && (best == nil || len(e.prefix) >= len(best.prefix)) {
			best = e
		}
	}
	return best
}
