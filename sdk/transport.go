// Package sdk is the contract between the cellgate agent and a modem plugin.
//
// A plugin is a separate process that drives one modem. It implements
// SecureTransport and calls Serve from its main; the agent starts it with
// Launch, verifies its SHA-256, and talks to it over hashicorp/go-plugin's
// gRPC transport with automatic mutual TLS. Errors cross the process boundary
// typed, so errors.As works the same on both sides.
//
// The contract speaks no vendor's words: errors carry a neutral class
// (NetKind for network failures) and the modem's own code and words as
// details, dial modes say where TLS runs rather than how a modem spells it,
// and ModemConfig.Options holds each plugin's own settings. It is versioned
// (ContractVersion, major.minor): Launch and Serve negotiate the version at
// start, the agent refuses a plugin of another major version with a
// *ContractError, and within a major version the wire only grows, so a plugin
// keeps working with the agent releases that follow it.
//
// README.md in this folder walks a plugin author through the call order,
// the session and flow-control model, the typed errors and the versioning
// rules.
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
// this package (ModemError, NetError, SerialError, TimeoutError, BundleError,
// OptionError, ModelMismatchError), possibly wrapped with context; they reach
// the agent with their fields intact.
type SecureTransport interface {
	// Open opens the modem's port, brings the modem to a known state
	// (registered, packet data context up) and reports what it found. An
	// option in cfg.Options the plugin does not know or cannot use is an
	// OptionError.
	Open(ctx context.Context, cfg ModemConfig) (ModemInfo, error)
	// Provision makes the modem's certificate store and TLS profile
	// b.Profile match b. Running it twice changes nothing; a bundle that is
	// broken is refused with a BundleError before anything reaches the
	// modem.
	Provision(ctx context.Context, b Bundle) (ProvisionReport, error)
	// ListCerts returns the names of the files in the modem's certificate
	// store.
	ListCerts(ctx context.Context) ([]string, error)
	// DeleteCert deletes one file from the modem's certificate store.
	DeleteCert(ctx context.Context, name string) error
	// Dial opens a session to req.Host:req.Port. The caller owns the
	// returned Session and must Close it.
	Dial(ctx context.Context, req DialRequest) (Session, error)
	// Stop closes every session, stops the modem's network service and
	// closes the port. It is idempotent: calling it again, or before Open,
	// returns nil.
	Stop(ctx context.Context) error
}

// Session is one modem session: a bidirectional byte stream plus events. Send and Recv may be called concurrently with each other; Close may
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
	// ID is the modem's session id, unique among the open sessions.
	ID() int
	// Send sends p; see above for when it returns.
	Send(ctx context.Context, p []byte) error
	// Recv returns the next frame; see above.
	Recv(ctx context.Context) (Frame, error)
	// Close ends the session on the modem. It is idempotent.
	Close(ctx context.Context) error
}

// ModemConfig says which modem to open and how.
type ModemConfig struct {
	// Port is the modem's device, e.g. the serial port /dev/ttyUSB2.
	Port string
	// Baud is the serial line rate; 0 lets the plugin use its default.
	Baud int
	// APN is the packet data context's access point name; empty uses the
	// network's default.
	APN string
	// Model is the model the agent expects (e.g. "sim7600"); a plugin that
	// finds another model returns ModelMismatchError.
	Model string
	// Options are the plugin's own settings, which the agent passes
	// verbatim from its configuration (modem.options); each plugin
	// documents the keys it reads. A plugin refuses a key it does not
	// know, and a value it cannot use, with an *OptionError, so a typo is
	// an error rather than a silently ignored setting.
	Options map[string]string
	// RegistrationTimeout bounds the wait for network registration; 0 lets
	// the plugin pick.
	RegistrationTimeout time.Duration
	// NoNetwork (contract 1.2) asks Open to stop once the modem answers, is
	// identified and its SIM is ready: no wait for signal or registration
	// and no packet data context, so it succeeds in seconds on a modem that
	// is out of coverage or refused by the network. ModemInfo then holds
	// the signal and registration read once, as found. The certificate
	// store (Provision, ListCerts, DeleteCerts) and Status work on a modem
	// opened so; Dial fails until a later Open without NoNetwork. A plugin
	// of contract 1.1 or older ignores it and brings the network up as
	// before, which Plugin.ContractVersion tells a caller.
	NoNetwork bool
}

// ModemInfo is what Open found. The JSON names are stable: scripts consume
// them through `cellgate modem info --json`.
type ModemInfo struct {
	// Model, Manufacturer and Revision are what the modem says it is.
	Model        string `json:"model"`
	Manufacturer string `json:"manufacturer"`
	Revision     string `json:"revision"`
	// IMEI is the modem's and ICCID the SIM card's identity.
	IMEI  string `json:"imei"`
	ICCID string `json:"iccid"`
	// SignalRSSI and SignalBER are signal quality as 3GPP TS 27.007 +CSQ
	// reports it: RSSI 0-31, BER 0-7, 99 meaning unknown.
	SignalRSSI int `json:"signal_rssi"`
	SignalBER  int `json:"signal_ber"`
	// Registration is "home", "roaming", "searching", "denied", "unknown" or
	// "not registered".
	Registration string `json:"registration"`
	// Operator is the network's name, when the modem reports it.
	Operator string `json:"operator,omitempty"`
	// ClockSynced reports whether the modem's clock holds network time, which
	// decides whether certificate validity can be checked on the modem.
	ClockSynced bool `json:"clock_synced"`
}

// Bundle is a TLS credential set for one TLS profile (the modem's numbered
// set of TLS settings and certificate files). Key material is never logged
// by the sdk.
type Bundle struct {
	// Profile is the modem's TLS profile index, 0-9.
	Profile int
	// CA is the PEM of the certificate authorities the modem verifies the
	// server against; Cert and Key are the PEM client certificate and its
	// key, both or neither.
	CA   []byte
	Cert []byte
	Key  []byte
	// KeyPassword decrypts an encrypted Key; empty for a plain key.
	KeyPassword string
	// Insecure, and only Insecure, allows a profile that does not verify
	// the server (ProvisionReport.AuthMode 0).
	Insecure bool
	// TLSVersion is "" (the modem's default), "1.0", "1.1" or "1.2".
	TLSVersion string
}

// ProvisionReport says what Provision did. Names are the modem's file names.
type ProvisionReport struct {
	// Profile is the TLS profile that was configured.
	Profile int `json:"profile"`
	// Downloaded lists the files written to the modem, Deleted the files
	// removed because nothing uses them any more, and Kept the files
	// already there that the profile uses.
	Downloaded []string `json:"downloaded"`
	Deleted    []string `json:"deleted"`
	Kept       []string `json:"kept"`
	// AuthMode is what the profile verifies: 0 nothing, 1 the server,
	// 2 both sides (mutual TLS).
	AuthMode int `json:"auth_mode"`
}

// DialMode selects where TLS is terminated. A plugin refuses a mode it does
// not know with a *ModemError.
type DialMode int

const (
	// DialModemTLS makes the modem terminate TLS with the credentials
	// provisioned into TLS profile DialRequest.Profile. It is the zero
	// value.
	DialModemTLS DialMode = iota
	// DialPlainTCP opens a plain TCP socket through the modem; the agent
	// runs TLS on top with its own keys, which never leave the gateway.
	DialPlainTCP
)

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
	// Host and Port are the server's address; Host is a name or an IP
	// address.
	Host string
	Port int
	// Profile is the TLS profile used in DialModemTLS mode.
	Profile int
	// Mode says where TLS runs.
	Mode DialMode
	// ServerName is the TLS server name to send as SNI in DialModemTLS mode;
	// empty disables SNI. Some modems can only present the dialled Host,
	// so a plugin for them may refuse a ServerName that differs from Host.
	ServerName string
	// Timeout bounds the dial inside the plugin (connect and handshake); 0
	// lets the plugin pick. The caller's ctx bounds it too.
	Timeout time.Duration
}

// Frame is one thing a session received: exactly one of Data and Event is
// set.
type Frame struct {
	// Data is received bytes.
	Data []byte
	// Event is something that happened to the session instead.
	Event *SessionEvent
}

// EventKind says what happened to a session.
type EventKind int

const (
	// EventPeerClosed: the server closed the connection.
	EventPeerClosed EventKind = iota + 1
	// EventNetworkLost: the modem lost the packet network.
	EventNetworkLost
	// EventModemRebooted: the modem rebooted, taking every session with it.
	EventModemRebooted
	// EventRecvClosed: the modem stopped receiving on the connection for
	// another reason; Code carries its error code.
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
	// Kind is what happened. A kind this build does not know is still
	// delivered; treat it as the end of the session.
	Kind EventKind
	// Code is the modem's own code for the event, where it gave one.
	Code int
	// Detail is the modem's words, e.g. the line it printed.
	Detail string
}
