package bg96

import (
	"context"
	"strings"

	"github.com/cellgate/cellgate/sdk"
	"github.com/cellgate/cellgate/sdk/at"
	"github.com/cellgate/cellgate/sdk/atkit"
)

// registerURCs claims the modem's unsolicited lines once, at Open.
func (d *Driver) registerURCs(ch *at.Channel) {
	// Read answers announce a length and carry raw bytes: counted, never
	// scanned.
	ch.HandleBinary("+QSSLRECV:", readLength, d.onReadData)
	ch.HandleBinary("+QIRD:", readLength, d.onReadData)
	ch.Handle("+QSSLURC:", func(u at.URC) { d.onSocketURC(u, "+QSSLURC:", sslDialect) })
	ch.Handle("+QIURC:", func(u at.URC) { d.onSocketURC(u, "+QIURC:", tcpDialect) })
	ch.Handle("RDY", d.onReboot)
}

// readLength reads <n> of "+QSSLRECV: <n>" and "+QIRD: <n>". Other forms
// of those prefixes (the test command's ranges, AT+QIRD=<id>,0's three
// numbers) are not data headers.
func readLength(line string) (int, bool) {
	_, v, _ := strings.Cut(line, ":")
	n, err := atoi(v)
	if err != nil || n < 0 || n > maxRead {
		return 0, false
	}
	return n, true
}

// onReadData passes a read's payload to the reader holding the slot.
func (d *Driver) onReadData(u at.URC) {
	p := u.Payload
	if p == nil {
		p = []byte{}
	}
	select {
	case d.recvData <- p:
	default:
		d.log.Warn("read payload with no reader waiting; dropped", "bytes", len(p))
	}
}

// onSocketURC handles "recv",<id> (data waits in the modem), "closed",<id>
// (the peer or the network closed the socket) and "pdpdeact",<ctx> (the
// network took the PDP context away).
func (d *Driver) onSocketURC(u at.URC, prefix string, dl *dialect) {
	f := atkit.Fields(strings.TrimPrefix(at.Normalize(u.Line), prefix))
	if len(f) < 2 {
		return
	}
	n, err := atoi(f[1])
	if err != nil {
		return
	}
	switch f[0] {
	case "recv":
		if s := d.session(n, dl); s != nil {
			s.poke()
		}
	case "closed":
		if s := d.session(n, dl); s != nil {
			s.mu.Lock()
			s.peerClosed = true
			s.mu.Unlock()
			s.poke()
		}
	case "pdpdeact":
		d.onNetworkLost(n, u.Line)
	}
}

func (d *Driver) session(id int, dl *dialect) *session {
	d.mu.Lock()
	defer d.mu.Unlock()
	if s := d.sessions[id]; s != nil && s.dl == dl {
		return s
	}
	return nil
}

// onNetworkLost ends every session: they all ran on the one PDP context
// this driver uses. The next Dial activates it again.
func (d *Driver) onNetworkLost(pdp int, line string) {
	d.mu.Lock()
	if pdp != d.set.pdp {
		d.mu.Unlock()
		return
	}
	sessions := d.sessions
	d.sessions = map[int]*session{}
	d.needInit = true
	d.mu.Unlock()
	d.log.Warn("packet data network lost", "pdp", pdp)
	for _, s := range sessions {
		s.end(&sdk.SessionEvent{Kind: sdk.EventNetworkLost, Detail: line})
		go s.free()
	}
}

// onReboot: "RDY" is the first line of a booting modem. Every socket, the
// active PDP context and the SSL contexts are gone; files stay.
func (d *Driver) onReboot(u at.URC) {
	d.mu.Lock()
	if d.ch == nil {
		d.mu.Unlock()
		return
	}
	sessions := d.sessions
	d.sessions, d.sni = map[int]*session{}, map[int]bool{}
	d.needInit = true
	d.rebooted()
	d.boot, d.rebooted = context.WithCancel(context.Background())
	d.mu.Unlock()
	d.log.Warn("modem rebooted", "sessions", len(sessions))
	for _, s := range sessions {
		s.mu.Lock()
		s.freed = true
		s.mu.Unlock()
		s.end(&sdk.SessionEvent{Kind: sdk.EventModemRebooted, Detail: u.Line})
	}
}

// onUnsolicited logs lines nobody claimed (boot chatter: APP RDY,
// +CPIN: READY, +QIND: SMS DONE).
func (d *Driver) onUnsolicited(u at.URC) {
	d.log.Debug("unsolicited", "line", u.Line)
}
