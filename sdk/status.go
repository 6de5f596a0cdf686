package sdk

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/cellgate/cellgate/sdk/proto"
)

// StatusReporter is an optional interface a SecureTransport may implement
// (contract 1.1): it reports the modem's state now, cheaply, so the agent
// can poll it every few seconds. A plugin that does not implement it keeps
// working; the agent then knows only what Open reported.
//
// Status must not disturb open sessions: a driver that shares one command
// channel with its sessions issues each query as its own command, so a
// session's send never waits for more than one short query. It returns
// promptly with an error wrapping ctx.Err() when ctx ends. A modem that is
// not open is not an error: Status reports PortOpen false.
type StatusReporter interface {
	Status(ctx context.Context) (ModemStatus, error)
}

// ErrStatusUnsupported is returned (wrapped) by the host side's Status when
// the plugin does not implement StatusReporter or negotiated contract 1.0.
var ErrStatusUnsupported = errors.New("plugin does not report modem status")

// ModemStatus is the modem's state at Time, as StatusReporter reports it.
// The JSON names are stable: the agent's /v1/status carries them.
type ModemStatus struct {
	// Time is when the plugin read the state.
	Time time.Time `json:"time"`
	// PortOpen says the plugin holds the modem's port (or interface) open.
	PortOpen bool `json:"port_open"`
	// SIM is the SIM card's state: "ready", "absent", "locked" (a PIN or
	// PUK is needed), or the modem's own words; empty when unknown.
	SIM string `json:"sim,omitempty"`
	// Registration is the best of the registrations below, in
	// ModemInfo.Registration's words.
	Registration string `json:"registration"`
	// CREG, CGREG and CEREG are the circuit, GPRS and LTE registrations in
	// the same words; empty when the modem does not report that one.
	CREG  string `json:"creg,omitempty"`
	CGREG string `json:"cgreg,omitempty"`
	CEREG string `json:"cereg,omitempty"`
	// SignalRSSI and SignalBER are +CSQ's figures (RSSI 0-31, 99 unknown);
	// see SignalDBM.
	SignalRSSI int `json:"signal_rssi"`
	SignalBER  int `json:"signal_ber"`
	// Operator is the network's name, when the modem reports it.
	Operator string `json:"operator,omitempty"`
	// PDPActive says the packet data context is up; nil when unknown.
	PDPActive *bool `json:"pdp_active,omitempty"`
	// SerialTxBytes and SerialRxBytes count the bytes written to and read
	// from the modem's port since the plugin opened it.
	SerialTxBytes uint64 `json:"serial_tx_bytes"`
	SerialRxBytes uint64 `json:"serial_rx_bytes"`
}

// SignalDBM is s.SignalRSSI in dBm; ok is false when the modem reports no
// signal (99) or a value outside 0-31. See RSSIToDBM.
func (s ModemStatus) SignalDBM() (dbm int, ok bool) { return RSSIToDBM(s.SignalRSSI) }

// RSSIToDBM converts a 3GPP TS 27.007 +CSQ rssi to dBm: 0 is -113 dBm or
// less, 1 is -111, 2 to 30 are -109 to -53 in 2 dB steps, and 31 is -51 or
// more. 99 (not known or not detectable) and anything else is ok false.
func RSSIToDBM(rssi int) (dbm int, ok bool) {
	if rssi < 0 || rssi > 31 {
		return 0, false
	}
	return -113 + 2*rssi, true
}

// statusProtocol is the first contract version with the Status RPC (1.1).
var statusProtocol = version{1, 1}

// Status asks the plugin for its modem's state. A plugin that negotiated
// contract 1.0, or does not implement StatusReporter, yields an error
// matching ErrStatusUnsupported without touching the modem.
func (c *client) Status(ctx context.Context) (ModemStatus, error) {
	if v, ok := versionOfProtocol(c.protocol); !ok || v.major != statusProtocol.major || v.minor < statusProtocol.minor {
		return ModemStatus{}, fmt.Errorf("plugin Status: %w (it speaks contract %s)", ErrStatusUnsupported, v)
	}
	resp, err := c.rpc.Status(ctx, &pb.StatusRequest{})
	if err != nil {
		if status.Code(err) == codes.Unimplemented {
			return ModemStatus{}, fmt.Errorf("plugin Status: %w", ErrStatusUnsupported)
		}
		return ModemStatus{}, c.callError(ctx, "Status", err)
	}
	return modemStatusFromPB(resp.GetStatus()), nil
}

var _ StatusReporter = (*client)(nil)

// Status serves the Status RPC from the plugin's StatusReporter, or answers
// UNIMPLEMENTED when it has none.
func (s *server) Status(ctx context.Context, _ *pb.StatusRequest) (*pb.StatusResponse, error) {
	r, ok := s.impl.(StatusReporter)
	if !ok {
		return nil, status.Error(codes.Unimplemented, "the plugin does not implement sdk.StatusReporter")
	}
	st, err := r.Status(ctx)
	if err != nil {
		return nil, statusFromError(err)
	}
	return &pb.StatusResponse{Status: modemStatusToPB(st)}, nil
}

func modemStatusToPB(s ModemStatus) *pb.ModemStatus {
	out := &pb.ModemStatus{
		PortOpen: s.PortOpen, Sim: s.SIM, Registration: s.Registration,
		Creg: s.CREG, Cgreg: s.CGREG, Cereg: s.CEREG,
		SignalRssi: int32(s.SignalRSSI), SignalBer: int32(s.SignalBER), Operator: s.Operator,
		SerialTxBytes: s.SerialTxBytes, SerialRxBytes: s.SerialRxBytes,
	}
	if s.PDPActive != nil {
		out.HasPdp, out.PdpActive = true, *s.PDPActive
	}
	if !s.Time.IsZero() {
		out.TimeUnixNanos = s.Time.UnixNano()
	}
	return out
}

func modemStatusFromPB(p *pb.ModemStatus) ModemStatus {
	s := ModemStatus{
		PortOpen: p.GetPortOpen(), SIM: p.GetSim(), Registration: p.GetRegistration(),
		CREG: p.GetCreg(), CGREG: p.GetCgreg(), CEREG: p.GetCereg(),
		SignalRSSI: int(p.GetSignalRssi()), SignalBER: int(p.GetSignalBer()), Operator: p.GetOperator(),
		SerialTxBytes: p.GetSerialTxBytes(), SerialRxBytes: p.GetSerialRxBytes(),
	}
	if p.GetHasPdp() {
		v := p.GetPdpActive()
		s.PDPActive = &v
	}
	if ns := p.GetTimeUnixNanos(); ns != 0 {
		s.Time = time.Unix(0, ns).UTC()
	}
	return s
}
