// Package sdk is the contract between the cellgate agent and a modem plugin.
//
// A plugin is a separate process that drives one modem. It implements
// SecureTransport and calls Serve from its main; the agent starts it with
// Launch, verifies its SHA-256, and talks to it over hashicorp/go-plugin's
// gRPC transport with automatic mutual TLS. Errors cross the process boundary
// typed, so errors.As works the same on both sides. README.md in this folder
// walks a plugin author through the call order, the session and flow-control
// model, and the typed errors.
package sdk

import (
	"context"
	"fmt"
	"time"
)

// SecureTransport is what a modem plugin implements. One plugin process
// drives one modem. Its methods are called by one agent, in the order Open,
// Provision (and ListCerts, DeleteCert), Dial, Stop; Dial may be called
// concurrently (two sessions at once) and so may Stop with anything else.
//
// Every method must honour ctx: when it is done the method returns promptly
// with an error that wraps ctx.Err(). Failures should be the typed errors of
// this package (ModemError, CCHError, SerialError, TimeoutError, BundleError,
// ModelMismatchError), possibly wrapped with context; they reach the agent
// with their fields intact.
type SecureTransport interface {
	// Open opens the serial port, brings the modem to a known state
	// (registered, PDP context up) and reports what it found.
	Open(ctx context.Context, cfg ModemConfig) (ModemInfo, error)
	// Provision makes the modem's certificate store and SSL context
	// b.Profile match b. Running it twice changes nothing; a bundle that is
	// broken is refused with a BundleError before any AT command is sent.
	Provision(ctx context.Context, b Bundle) (ProvisionReport, error)
	// ListCerts returns the names of the files in the modem's certificate
	// store.
	ListCerts(ctx context.Context) ([]string, error)
	// DeleteCert deletes one file from the modem's certificate store.
	DeleteCert(ctx context.Context, name string) error
	// Dial opens a session to req.Host:req.Port. The caller owns the
	// returned Session and must Close it.
	Dial(ctx context.Context, req DialRequest) (Session, error)
	// Stop closes every session (AT+CCHCLOSE), stops the service
	// (AT+CCHSTOP) and closes the port. It is idempotent: calling it again,
	// or before Open, returns nil.
	Stop(ctx context.Context) error
}

// Session is one modem (CCH) session: a bidirectional byte stream plus
// events. Send and Recv may be called concurrently with each other; Close may
// be called concurrently with both and makes them return.
//
// In a plugin, Send blocks until the modem accepted p (a slow modem makes
// Send wait). On the agent's side of the boundary, Send returns once p is
// inside the session's bounded send window (see LaunchConfig.SendWindow) and
// a failure of the plugin's Send is reported by the next Send, by Recv or by
// Close; Close first waits until every byte in the window was accepted.
//
// Recv returns the next frame. After the session ended it returns io.EOF
// (clean end) or a typed error, once every frame received before the end has
// been returned.
type Session interface {
	// ID is the modem's session id (0 or 1 on SIMCom modules).
	ID() int
	Send(ctx context.Context, p []byte) error
	Recv(ctx context.Context) (Frame, error)
	// Close ends the session (AT+CCHCLOSE). It is idempotent.
	Close(ctx context.Context) error
}

// ModemConfig says which modem to open and how.
type ModemConfig struct {
	// Port is the serial device, e.g. /dev/ttyUSB2.
	Port string
	// Baud is the serial line rate; 0 lets the plugin use its default.
	Baud int
	// APN is the packet data context's access point name; empty uses the
	// network's default.
	APN string
	// Model is the model the agent expects (e.g. "sim7600"); a plugin that
	// finds another model returns ModelMismatchError.
	Model string
	// Options are plugin-specific settings, documented by each plugin.
	Options map[string]string
	// RegistrationTimeout bounds the wait for network registration; 0 lets
	// the plugin pick.
	RegistrationTimeout time.Duration
}

// ModemInfo is what Open found. The JSON names are stable: scripts consume
// them through `cellgate modem info --json`.
type ModemInfo struct {
	Model        string `json:"model"`
	Manufacturer string `json:"manufacturer"`
	Revision     string `json:"revision"`
	IMEI         string `json:"imei"`
	ICCID        string `json:"iccid"`
	// SignalRSSI and SignalBER are AT+CSQ's values (99 means unknown).
	SignalRSSI int `json:"signal_rssi"`
	SignalBER  int `json:"signal_ber"`
	// Registration is "home", "roaming", "searching", "denied", "unknown" or
	// "not registered".
	Registration string `json:"registration"`
	Operator     string `json:"operator,omitempty"`
	// ClockSynced reports whether the modem's clock holds network time, which
	// decides whether certificate validity can be checked on the modem.
	ClockSynced bool `json:"clock_synced"`
}

// Bundle is a TLS credential set for one SSL context on the modem. CA, Cert
// and Key are PEM. Key material is never logged by the sdk.
type Bundle struct {
	// Profile is the modem's SSL context index, 0-9.
	Profile int
	CA      []byte
	Cert    []byte
	Key     []byte
	// KeyPassword decrypts an encrypted Key; empty for a plain key.
	KeyPassword string
	// Insecure, and only Insecure, allows a context that does not verify the
	// server (authmode 0).
	Insecure bool
	// TLSVersion is "" (the modem's default), "1.0", "1.1" or "1.2".
	TLSVersion string
}

// ProvisionReport says what Provision did. Names are the modem's file names.
type ProvisionReport struct {
	Profile    int      `json:"profile"`
	Downloaded []string `json:"downloaded"`
	Deleted    []string `json:"deleted"`
	Kept       []string `json:"kept"`
	// AuthMode is the authmode the SSL context was set to: 0 none, 1 server,
	// 2 mutual.
	AuthMode int `json:"auth_mode"`
}

// DialMode selects where TLS is terminated.
type DialMode int

const (
	// DialModemTLS makes the modem terminate TLS (CCHOPEN client type 2) with
	// the SSL context DialRequest.Profile. It is the zero value.
	DialModemTLS DialMode = iota
	// DialPlainTCP opens plain TCP through the modem (client type 1); the
	// agent runs TLS on top with its own keys.
	DialPlainTCP
)

// ClientType is the AT+CCHOPEN client type for m: 2 for DialModemTLS, 1 for
// DialPlainTCP, 0 for an unknown mode.
func (m DialMode) ClientType() int {
	switch m {
	case DialModemTLS:
		return 2
	case DialPlainTCP:
		return 1
	}
	return 0
}

// String names m as config files do: "modem" or "host".
func (m DialMode) String() string {
	switch m {
	case DialModemTLS:
		return "modem"
	case DialPlainTCP:
		return "host"
	}
	return fmt.Sprintf("DialMode(%d)", int(m))
}

// DialRequest says where a session goes.
type DialRequest struct {
	Host string
	Port int
	// Profile is the SSL context used in DialModemTLS mode.
	Profile int
	Mode    DialMode
	// ServerName is the TLS server name to send as SNI in DialModemTLS mode;
	// empty disables SNI. SIMCom modules can only present the dialled Host,
	// so a plugin for them may refuse a ServerName that differs from Host.
	ServerName string
	// Timeout bounds the dial inside the plugin (connect and handshake); 0
	// lets the plugin pick. The caller's ctx bounds it too.
	Timeout time.Duration
}

// Frame is one thing a session received: exactly one of Data and Event is
// set.
type Frame struct {
	Data  []byte
	Event *SessionEvent
}

// EventKind says what happened to a session.
type EventKind int

const (
	// EventPeerClosed: the server closed the connection (+CCH_PEER_CLOSED).
	EventPeerClosed EventKind = iota + 1
	// EventNetworkLost: the modem lost the packet network.
	EventNetworkLost
	// EventModemRebooted: the modem rebooted (boot URCs), taking every
	// session with it.
	EventModemRebooted
	// EventRecvClosed: receiving failed (+CCH_RECV_CLOSED); Code carries the
	// modem's error code.
	EventRecvClosed
)

// String returns the event's name in snake case, as used in logs.
func (k EventKind) String() string {
	switch k {
	case EventPeerClosed:
		return "peer_closed"
	case EventNetworkLost:
		return "network_lost"
	case EventModemRebooted:
		return "modem_rebooted"
	case EventRecvClosed:
		return "recv_closed"
	}
	return fmt.Sprintf("EventKind(%d)", int(k))
}

// SessionEvent is something that happened to a session other than data.
// Each kind above means the connection is gone, so a plugin ends the
// session's receive side after delivering it: Recv returns io.EOF or an error
// next.
type SessionEvent struct {
	Kind EventKind
	// Code is the modem's error code where the URC carries one.
	Code int
	// Detail is the modem's words, e.g. the URC line.
	Detail string
}
