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

// ModemError is a request the modem refused: a command answered with an
// error result, or a step the modem's answers made impossible (SIM missing,
// registration denied). It carries the modem's own words, quoted by the
// driver: the sdk adds none of a vendor's.
type ModemError struct {
	// Op is the step or command that failed, e.g. "AT+CPIN?" or "check SIM".
	Op string
	// Code is the modem's error number when it gave one (a 3GPP CME code,
	// a vendor's own), -1 when it gave none.
	Code int
	// Text is the modem's words as the driver quotes them, e.g.
	// "+CME ERROR: SIM not inserted", or a bare "ERROR"; empty when there
	// were none.
	Text string
}

// Error reads like "AT+CPIN?: +CME ERROR: SIM not inserted (code 10)": Op,
// then Text, then Code unless Text already ends with it. Without Text it
// reads "AT+CPIN?: modem error 10", or "AT+CPIN?: refused by the modem".
func (e *ModemError) Error() string {
	code := strconv.Itoa(e.Code)
	switch {
	case e.Text != "" && e.Code >= 0 && !strings.HasSuffix(e.Text, code):
		return fmt.Sprintf("%s: %s (code %d)", e.Op, e.Text, e.Code)
	case e.Text != "":
		return e.Op + ": " + e.Text
	case e.Code >= 0:
		return fmt.Sprintf("%s: modem error %d", e.Op, e.Code)
	}
	return e.Op + ": refused by the modem"
}

// NetKind is why a network operation of the modem failed, in terms that fit
// any modem. Drivers map their vendor's codes to it; the agent's retry
// policy and logs read it, never the vendor's code. The zero value is
// NetOther, which is also what a kind unknown to this build arrives as.
type NetKind int

const (
	// NetOther is a failure none of the kinds below describes.
	NetOther NetKind = iota
	// NetDNS: the host name did not resolve.
	NetDNS
	// NetConnect: the connection could not be made (refused, unreachable,
	// no socket available).
	NetConnect
	// NetHandshake: the TLS handshake failed, e.g. the server's certificate
	// is not signed by the provisioned CA, or the server refused the
	// client's.
	NetHandshake
	// NetCertificate: a certificate problem the modem names as such: the
	// TLS profile has no usable certificates, or the peer's certificate was
	// refused and the modem says so rather than reporting a handshake
	// failure. Treat it like NetHandshake where the difference does not
	// matter.
	NetCertificate
	// NetPeerClosed: the peer closed the connection.
	NetPeerClosed
	// NetTimeout: the modem's network stack gave up waiting (connect,
	// handshake or send).
	NetTimeout
	// NetBusy: no free session, or the service is busy; try again later.
	NetBusy
	// NetNoNetwork: the modem has no packet data network.
	NetNoNetwork
	// NetSendFailed: data could not be sent on an open connection.
	NetSendFailed
	// NetState: the session or the service is not in a state that allows
	// the operation (not open, already closed, not started).
	NetState
	// NetInvalid: the modem refused the operation's parameters.
	NetInvalid
)

// netKindNames are NetKind's names for logs, in snake case.
var netKindNames = [...]string{
	NetOther:       "other",
	NetDNS:         "dns",
	NetConnect:     "connect",
	NetHandshake:   "handshake",
	NetCertificate: "certificate",
	NetPeerClosed:  "peer_closed",
	NetTimeout:     "timeout",
	NetBusy:        "busy",
	NetNoNetwork:   "no_network",
	NetSendFailed:  "send_failed",
	NetState:       "state",
	NetInvalid:     "invalid",
}

// netKindPhrases say what each kind means, for a NetError without the
// modem's words.
var netKindPhrases = [...]string{
	NetOther:       "network operation failed",
	NetDNS:         "host name did not resolve",
	NetConnect:     "connection failed",
	NetHandshake:   "TLS handshake failed",
	NetCertificate: "certificate refused or missing",
	NetPeerClosed:  "closed by the peer",
	NetTimeout:     "timed out",
	NetBusy:        "busy",
	NetNoNetwork:   "no packet data network",
	NetSendFailed:  "send failed",
	NetState:       "not possible in this state",
	NetInvalid:     "invalid parameter",
}

// known reports whether k is one of the kinds above.
func (k NetKind) known() bool { return k >= 0 && int(k) < len(netKindNames) }

// String returns the kind's name in snake case ("handshake",
// "peer_closed"), as used in logs.
func (k NetKind) String() string {
	if k.known() {
		return netKindNames[k]
	}
	return fmt.Sprintf("NetKind(%d)", int(k))
}

// NetError is a network operation the modem could not do: a connection it
// could not open, a handshake that failed, a send or close it reported as
// failed. Kind says why in neutral terms; Vendor, Code and Text carry the
// modem's own, so a log line quotes the modem, e.g. "open session 0:
// +CCHOPEN: 0,15 (handshake error)".
type NetError struct {
	// Op is the operation: "open" (or "dial"), "send", "recv", "close",
	// "start", "stop", or another short word of the driver's.
	Op string
	// Session is the session id, or -1 when the failure is not one
	// session's (a service start or stop, a Dial refused before a session
	// existed).
	Session int
	// Kind is the neutral class of the failure.
	Kind NetKind
	// Vendor names who defined Code, e.g. "simcom" or "quectel"; empty when
	// there is no vendor code.
	Vendor string
	// Code is the vendor's error number; meaningful when Vendor is set.
	Code int
	// Text is the modem's words as the driver quotes them, e.g.
	// "+CCHOPEN: 0,15 (handshake error)"; empty when there were none.
	Text string
}

// Error reads "<Op> session <Session>: <Text>", without the session part
// when Session is -1. Without Text it names the kind and the vendor's code:
// "open session 0: TLS handshake failed (simcom code 15)".
func (e *NetError) Error() string {
	where := e.Op
	if e.Session >= 0 {
		where = fmt.Sprintf("%s session %d", e.Op, e.Session)
	}
	if e.Text != "" {
		return where + ": " + e.Text
	}
	what := netKindPhrases[NetOther]
	if e.Kind.known() {
		what = netKindPhrases[e.Kind]
	}
	if e.Vendor != "" {
		return fmt.Sprintf("%s: %s (%s code %d)", where, what, e.Vendor, e.Code)
	}
	return where + ": " + what
}

// Timeout reports whether the modem gave up waiting (Kind NetTimeout), so
// callers testing for net.Error-style timeouts recognise it.
func (e *NetError) Timeout() bool { return e.Kind == NetTimeout }

// NetKindOf returns the Kind of the first *NetError in err's chain, and
// false when there is none.
func NetKindOf(err error) (NetKind, bool) {
	var ne *NetError
	if errors.As(err, &ne) {
		return ne.Kind, true
	}
	return NetOther, false
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
// deferred result, no registration within the bound.
type TimeoutError struct {
	// Op is what was awaited, e.g. "open session 0" or "registration".
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

// BundleError is a credential bundle refused before anything reached the
// modem: bad PEM, key and certificate that do not match, an expired
// certificate, a file over the modem's size limit.
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

// OptionError is a ModemConfig.Options entry the plugin refuses: a key it
// does not know, or a value it cannot use. Retrying cannot fix it; the
// agent stops and names the key (its config key is modem.options.<Key>).
type OptionError struct {
	// Key is the option's name.
	Key string
	// Reason says what is wrong with it, and what the plugin accepts.
	Reason string
}

// Error reads like "modem option negotiate_time: "5s" is out of range (want
// 10s to 5m0s)".
func (e *OptionError) Error() string {
	return fmt.Sprintf("modem option %s: %s", e.Key, e.Reason)
}

// ModelMismatchError is a plugin started against a modem of another model.
type ModelMismatchError struct {
	// Want is the model the plugin drives (or the config asked for).
	Want string
	// Got is what the modem reported as its model.
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
	// Op is the SecureTransport method, e.g. "Provision".
	Op string
	// Message is the plugin's error text.
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
	// Sent is how many bytes of p went to the plugin.
	Sent int
	// Err is why the rest did not, typically ctx.Err().
	Err error
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
