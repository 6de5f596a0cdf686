package sdk

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// ErrPluginExited says the plugin process died or was killed. Every call in
// flight and every open session of that process fails with an error wrapping
// it (test with errors.Is); the agent restarts the plugin and replays Open and
// Provision.
var ErrPluginExited = errors.New("plugin process exited")

// ErrSessionClosed is returned (wrapped) by Send and Recv on a session the
// caller closed. It wraps net.ErrClosed so a net.Conn built on a Session can
// report the conventional error.
var ErrSessionClosed = fmt.Errorf("session closed: %w", net.ErrClosed)

// ModemError is a command the modem refused: a final result of ERROR or
// +CME ERROR, carrying the modem's words.
type ModemError struct {
	// Op is the step or command that failed, e.g. "AT+CPIN?" or "sim ready".
	Op string
	// Code is the numeric CME error code when the modem gave one, -1 when it
	// gave text only or a bare ERROR.
	Code int
	// Text is the modem's words after "+CME ERROR: " (e.g. "SIM not
	// inserted"), or empty for a bare ERROR.
	Text string
}

// Error reads like "AT+CPIN?: +CME ERROR: SIM not inserted", or ends in
// "ERROR" for a bare refusal.
func (e *ModemError) Error() string {
	switch {
	case e.Text != "" && e.Code >= 0 && e.Text != strconv.Itoa(e.Code):
		return fmt.Sprintf("%s: +CME ERROR: %s (code %d)", e.Op, e.Text, e.Code)
	case e.Text != "":
		return fmt.Sprintf("%s: +CME ERROR: %s", e.Op, e.Text)
	case e.Code >= 0:
		return fmt.Sprintf("%s: +CME ERROR: %d", e.Op, e.Code)
	}
	return e.Op + ": ERROR"
}

// CCHError is a non-zero <err> from the modem's SSL (CCH) service, e.g.
// "+CCHOPEN: 0,15" for a refused handshake.
type CCHError struct {
	// Op is the CCH command without its prefix in lower case ("open",
	// "send", "recv", "close", "start", "stop"), or another short word for
	// a URC.
	Op string
	// Session is the session id, or -1 for service-wide results (CCHSTART,
	// CCHSTOP).
	Session int
	// Code is the <err> value; see CCHMeaning.
	Code int
}

// Error reads like "open session 0: +CCHOPEN: 0,15 (handshake error)".
func (e *CCHError) Error() string {
	meaning := strings.ToLower(CCHMeaning(e.Code))
	cmd := cchCommands[e.Op]
	switch {
	case cmd != "" && e.Session >= 0:
		return fmt.Sprintf("%s session %d: %s: %d,%d (%s)", e.Op, e.Session, cmd, e.Session, e.Code, meaning)
	case cmd != "":
		return fmt.Sprintf("%s: %s: %d (%s)", e.Op, cmd, e.Code, meaning)
	case e.Session >= 0:
		return fmt.Sprintf("%s session %d: error %d (%s)", e.Op, e.Session, e.Code, meaning)
	}
	return fmt.Sprintf("%s: error %d (%s)", e.Op, e.Code, meaning)
}

// cchCommands maps CCHError.Op to the result line the modem printed, so the
// message quotes the modem rather than paraphrasing it.
var cchCommands = map[string]string{
	"open":  "+CCHOPEN",
	"send":  "+CCHSEND",
	"recv":  "+CCHRECV",
	"close": "+CCHCLOSE",
	"start": "+CCHSTART",
	"stop":  "+CCHSTOP",
}

// Meaning returns CCHMeaning(e.Code).
func (e *CCHError) Meaning() string { return CCHMeaning(e.Code) }

// cchMeanings is the <err> table of the SIM7500/SIM7600 AT manual V3.00
// §10.3 (identical in the A76XX SSL application note).
var cchMeanings = [...]string{
	0:  "Operation succeeded",
	1:  "Alerting state (reserved)",
	2:  "Unknown error",
	3:  "Busy",
	4:  "Peer closed",
	5:  "Operation timeout",
	6:  "Transfer failed",
	7:  "Memory error",
	8:  "Invalid parameter",
	9:  "Network error",
	10: "Open session error",
	11: "State error",
	12: "Create socket error",
	13: "Get DNS error",
	14: "Connect socket error",
	15: "Handshake error",
	16: "Close socket error",
	17: "Nonet",
	18: "Send data timeout",
	19: "Not set certificates",
}

// CCHMeaning returns the manual's meaning of a CCH <err> code, e.g.
// "Handshake error" for 15, or "unknown CCH error code N" outside 0-19.
func CCHMeaning(code int) string {
	if code >= 0 && code < len(cchMeanings) {
		return cchMeanings[code]
	}
	return fmt.Sprintf("unknown CCH error code %d", code)
}

// SerialError is a failure of the serial port itself: it could not be
// opened, vanished (USB unplugged), or a read or write failed.
type SerialError struct {
	// Op is what was being done: "open", "read", "write", ...
	Op string
	// Port is the device path.
	Port string
	// Err is the operating system's words. It is a string, not an error,
	// because it must survive the process boundary.
	Err string
}

// Error reads like "serial port /dev/ttyUSB2: read: input/output error".
func (e *SerialError) Error() string {
	return fmt.Sprintf("serial port %s: %s: %s", e.Port, e.Op, e.Err)
}

// TimeoutError is a modem that did not answer in time: no final result, no
// deferred URC, no registration within the bound.
type TimeoutError struct {
	// Op is what was awaited, e.g. "AT+CCHOPEN result" or "registration".
	Op string
	// After is how long was waited.
	After time.Duration
}

// Error reads like "registration: no answer from the modem after 1m0s".
func (e *TimeoutError) Error() string {
	if e.After <= 0 {
		return e.Op + ": no answer from the modem in time"
	}
	return fmt.Sprintf("%s: no answer from the modem after %s", e.Op, e.After)
}

// Timeout reports true, so callers testing for net.Error-style timeouts
// recognise it.
func (e *TimeoutError) Timeout() bool { return true }

// BundleError is a credential bundle refused before any AT command was sent:
// bad PEM, key and certificate that do not match, an expired certificate, a
// file over the modem's size limit.
type BundleError struct {
	// Field is "ca", "cert", "key", "key_password", "profile" or
	// "tls_version".
	Field string
	// Reason says what is wrong with it.
	Reason string
}

// Error reads like "bundle cert: certificate expired on 2024-01-01".
func (e *BundleError) Error() string {
	return fmt.Sprintf("bundle %s: %s", e.Field, e.Reason)
}

// ModelMismatchError is a plugin started against a modem of another model.
type ModelMismatchError struct {
	// Want is the model the plugin drives (or the config asked for).
	Want string
	// Got is what the modem reported (AT+CGMM / ATI).
	Got string
}

// Error reads like "modem model mismatch: want sim7600, modem reports
// SIMCOM_SIM7800E".
func (e *ModelMismatchError) Error() string {
	return fmt.Sprintf("modem model mismatch: want %s, modem reports %s", e.Want, e.Got)
}

// PluginError is a plugin failure that carried none of the typed errors
// above: its Message is the plugin's Error() text, and Op the method that
// failed.
type PluginError struct {
	Op      string
	Message string
}

// Error reads like "plugin Provision: <the plugin's message>".
func (e *PluginError) Error() string {
	return fmt.Sprintf("plugin %s: %s", e.Op, e.Message)
}

// PartialSendError is returned by the agent-side Session.Send when its ctx
// ended after part of p was already handed to the plugin: those Sent bytes
// will be delivered (or the session fails), the rest were not sent.
type PartialSendError struct {
	Sent int
	Err  error
}

// Error reads like "sent 4096 bytes before: context deadline exceeded".
func (e *PartialSendError) Error() string {
	return fmt.Sprintf("sent %d bytes before: %v", e.Sent, e.Err)
}

// Unwrap returns the cause, typically ctx.Err().
func (e *PartialSendError) Unwrap() error { return e.Err }

// remoteError keeps the plugin's full error text (its wrapping context)
// while exposing the rebuilt typed error to errors.As and errors.Is.
type remoteError struct {
	msg   string
	typed error
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.typed }
