package simcom

import (
	"testing"

	"github.com/cellgate/cellgate/sdk"
	"github.com/cellgate/cellgate/sdk/atkit"
)

// TestCCHCodesMapToNeutralKinds: SIMCom's <err> table lives here, and every
// code reaches the agent as a neutral kind with SIMCom's code and words.
func TestCCHCodesMapToNeutralKinds(t *testing.T) {
	meanings := []string{"Operation succeeded", "Alerting state (reserved)", "Unknown error", "Busy", "Peer closed",
		"Operation timeout", "Transfer failed", "Memory error", "Invalid parameter", "Network error",
		"Open session error", "State error", "Create socket error", "Get DNS error", "Connect socket error",
		"Handshake error", "Close socket error", "Nonet", "Send data timeout", "Not set certificates"}
	for code, want := range meanings {
		if got := cchMeaning(code); got != want {
			t.Errorf("cchMeaning(%d) = %q, want %q", code, got, want)
		}
	}
	if got := cchMeaning(20); got != "unknown CCH error code 20" {
		t.Errorf("cchMeaning(20) = %q", got)
	}
	for _, tc := range []struct {
		op      string
		session int
		code    int
		kind    sdk.NetKind
		msg     string
	}{
		{"open", 0, 15, sdk.NetHandshake, "open session 0: +CCHOPEN: 0,15 (handshake error)"},
		{"open", 1, 13, sdk.NetDNS, "open session 1: +CCHOPEN: 1,13 (get dns error)"},
		{"open", 0, 14, sdk.NetConnect, "open session 0: +CCHOPEN: 0,14 (connect socket error)"},
		{"open", 0, 19, sdk.NetCertificate, "open session 0: +CCHOPEN: 0,19 (not set certificates)"},
		{"send", 1, 18, sdk.NetTimeout, "send session 1: +CCHSEND: 1,18 (send data timeout)"},
		{"start", -1, 17, sdk.NetNoNetwork, "start: +CCHSTART: 17 (nonet)"},
		{"close", 0, 4, sdk.NetPeerClosed, "close session 0: +CCHCLOSE: 0,4 (peer closed)"},
		{"peer", 1, 3, sdk.NetBusy, "peer session 1: error 3 (busy)"},
		{"open", 0, 42, sdk.NetOther, "open session 0: +CCHOPEN: 0,42 (unknown cch error code 42)"},
	} {
		e := cchError(tc.op, tc.session, tc.code)
		if e.Kind != tc.kind || e.Vendor != "simcom" || e.Code != tc.code || e.Session != tc.session || e.Error() != tc.msg {
			t.Errorf("cchError(%s, %d, %d) = %+v (%q), want kind %s and %q", tc.op, tc.session, tc.code, *e, e, tc.kind, tc.msg)
		}
	}
}

func TestSessionEndsBecomeNeutralErrors(t *testing.T) {
	for _, tc := range []struct {
		ev   sdk.SessionEvent
		kind sdk.NetKind
		code int
	}{
		{sdk.SessionEvent{Kind: sdk.EventPeerClosed, Detail: "+CCH_PEER_CLOSED: 0"}, sdk.NetPeerClosed, 0},
		{sdk.SessionEvent{Kind: sdk.EventNetworkLost, Code: 9, Detail: "+CCH_RECV_CLOSED: 0,9"}, sdk.NetNoNetwork, 9},
		{sdk.SessionEvent{Kind: sdk.EventRecvClosed, Code: 15, Detail: "+CCHCLOSE: 0,15"}, sdk.NetHandshake, 15},
		{sdk.SessionEvent{Kind: sdk.EventModemRebooted, Detail: "RDY"}, sdk.NetState, 0},
	} {
		e := eventError(0, tc.ev)
		if e.Kind != tc.kind || e.Code != tc.code || (tc.code != 0) != (e.Vendor == "simcom") {
			t.Errorf("eventError(%+v) = %+v, want kind %s, code %d", tc.ev, *e, tc.kind, tc.code)
		}
	}
}

func TestOptions(t *testing.T) {
	o, err := parseOptions(SIM7600, nil)
	if err != nil || o.negotiateTime != SIM7600.NegotiateTime {
		t.Fatalf("no options = %+v, %v; want the profile's negotiate time", o, err)
	}
	o, err = parseOptions(SIM7600, map[string]string{OptionNegotiateTime: "45s"})
	if err != nil || o.negotiateTime.Seconds() != 45 {
		t.Fatalf("negotiate_time 45s = %+v, %v", o, err)
	}
	for _, bad := range []map[string]string{
		{OptionNegotiateTime: "5s"},
		{OptionNegotiateTime: "6m"},
		{OptionNegotiateTime: "45.5s"},
		{OptionNegotiateTime: "45"},
		{"negotiate_tme": "45s"},
	} {
		_, err := parseOptions(SIM7600, bad)
		oe, ok := err.(*sdk.OptionError)
		if !ok {
			t.Errorf("options %v = %v, want an *sdk.OptionError", bad, err)
			continue
		}
		for k := range bad {
			if oe.Key != k {
				t.Errorf("options %v: error names %q, want %q", bad, oe.Key, k)
			}
		}
	}
}

// TestNegotiateTimeOptionReachesTheModem: the option is written to the TLS
// profile, and an unknown option fails Open before the port is touched.
func TestNegotiateTimeOptionReachesTheModem(t *testing.T) {
	d, m := startScripted(t, "option-negotiate-time")
	ctx := testCtx(t)
	if _, err := d.Open(ctx, sdk.ModemConfig{Port: "scripted", Options: map[string]string{"nope": "1"}}); err == nil {
		t.Fatal("Open with an unknown option succeeded")
	}
	if _, err := d.Open(ctx, sdk.ModemConfig{Port: "scripted", Options: map[string]string{OptionNegotiateTime: "45s"}}); err != nil {
		t.Fatalf("Open: %v", err)
	}
	p := provisioned{
		Credentials: atkit.Credentials{
			Bundle: sdk.Bundle{Profile: 0},
			CA:     atkit.File{Kind: atkit.KindCA, Name: "cgca-000000000000.pem"},
		},
		auth:       1,
		sslVersion: 3,
	}
	if err := d.configureContext(ctx, d.channel(), p, true); err != nil {
		t.Fatalf("configureContext: %v", err)
	}
	m.finish(t)
	d.Stop(ctx)
}
