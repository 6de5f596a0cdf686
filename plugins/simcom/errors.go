package simcom

import (
	"fmt"
	"strings"

	"github.com/cellgate/cellgate/sdk"
)

// vendor names SIMCom as the owner of the codes in sdk.NetError.Code.
const vendor = "simcom"

// cchCode is one row of the CCH <err> table: the manual's meaning and the
// contract's neutral kind for it.
type cchCode struct {
	meaning string
	kind    sdk.NetKind
}

// cchCodes is the <err> table of the SIM7500/SIM7600 AT manual V3.00 §10.3
// (identical in the A76XX SSL application note), with the neutral kind each
// code maps to.
var cchCodes = [...]cchCode{
	0:  {"Operation succeeded", sdk.NetOther},
	1:  {"Alerting state (reserved)", sdk.NetOther},
	2:  {"Unknown error", sdk.NetOther},
	3:  {"Busy", sdk.NetBusy},
	4:  {"Peer closed", sdk.NetPeerClosed},
	5:  {"Operation timeout", sdk.NetTimeout},
	6:  {"Transfer failed", sdk.NetSendFailed},
	7:  {"Memory error", sdk.NetOther},
	8:  {"Invalid parameter", sdk.NetInvalid},
	9:  {"Network error", sdk.NetNoNetwork},
	10: {"Open session error", sdk.NetConnect},
	11: {"State error", sdk.NetState},
	12: {"Create socket error", sdk.NetConnect},
	13: {"Get DNS error", sdk.NetDNS},
	14: {"Connect socket error", sdk.NetConnect},
	15: {"Handshake error", sdk.NetHandshake},
	16: {"Close socket error", sdk.NetOther},
	17: {"Nonet", sdk.NetNoNetwork},
	18: {"Send data timeout", sdk.NetTimeout},
	19: {"Not set certificates", sdk.NetCertificate},
}

// cchMeaning returns the manual's meaning of a CCH <err> code, e.g.
// "Handshake error" for 15, or "unknown CCH error code N" outside 0-19.
func cchMeaning(code int) string {
	if code >= 0 && code < len(cchCodes) {
		return cchCodes[code].meaning
	}
	return fmt.Sprintf("unknown CCH error code %d", code)
}

// cchKind returns the neutral kind of a CCH <err> code; NetOther for a code
// outside the table.
func cchKind(code int) sdk.NetKind {
	if code >= 0 && code < len(cchCodes) {
		return cchCodes[code].kind
	}
	return sdk.NetOther
}

// cchResults maps an operation to the result line the modem prints for it,
// so the error quotes the modem rather than paraphrasing it.
var cchResults = map[string]string{
	"open":  "+CCHOPEN",
	"send":  "+CCHSEND",
	"recv":  "+CCHRECV",
	"close": "+CCHCLOSE",
	"start": "+CCHSTART",
	"stop":  "+CCHSTOP",
}

// cchError is a non-zero CCH <err> as the contract's NetError: the neutral
// kind, and the modem's result line with the code's meaning as its words,
// e.g. "+CCHOPEN: 0,15 (handshake error)". session is -1 for service-wide
// results (CCHSTART, CCHSTOP).
func cchError(op string, session, code int) *sdk.NetError {
	meaning := strings.ToLower(cchMeaning(code))
	var text string
	switch cmd := cchResults[op]; {
	case cmd != "" && session >= 0:
		text = fmt.Sprintf("%s: %d,%d (%s)", cmd, session, code, meaning)
	case cmd != "":
		text = fmt.Sprintf("%s: %d (%s)", cmd, code, meaning)
	default:
		text = fmt.Sprintf("error %d (%s)", code, meaning)
	}
	return &sdk.NetError{Op: op, Session: session, Kind: cchKind(code), Vendor: vendor, Code: code, Text: text}
}

// eventError is why a session that ended with ev fails the calls that come
// after: the event's neutral kind, the URC's code when it had one, and the
// URC line.
func eventError(session int, ev sdk.SessionEvent) *sdk.NetError {
	e := &sdk.NetError{Op: "recv", Session: session, Kind: sdk.NetState, Text: ev.Detail}
	if ev.Code != 0 {
		e.Kind, e.Vendor, e.Code = cchKind(ev.Code), vendor, ev.Code
	}
	switch ev.Kind {
	case sdk.EventPeerClosed:
		e.Kind = sdk.NetPeerClosed
	case sdk.EventNetworkLost:
		e.Kind = sdk.NetNoNetwork
	case sdk.EventModemRebooted:
		e.Text = "the modem rebooted (" + ev.Detail + ")"
	}
	return e
}
