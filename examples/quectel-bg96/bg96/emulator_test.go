package bg96

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/cellgate/cellgate/sdk"
	"github.com/cellgate/cellgate/sdk/modemsim"
	"github.com/cellgate/cellgate/sdk/plugintest"
)

// TestPlainTCPSocketAgainstEmulator checks the host-TLS mode (a plain TCP
// socket: AT+QIOPEN, AT+QISEND, AT+QIRD and +QIURC) end to end through the
// emulated BG96 on a real pty to a real TCP echo server; the conformance
// suite covers the modem-TLS mode. 64 KiB of random bytes must come back
// unchanged, and the server's close must arrive as a peer-closed event.
func TestPlainTCPSocketAgainstEmulator(t *testing.T) {
	m, err := modemsim.Start(modemsim.Config{Model: "bg96", Baud: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	want := make([]byte, 64<<10)
	rand.Read(want)
	served := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			served <- err
			return
		}
		defer c.Close()
		got := make([]byte, len(want))
		if _, err := io.ReadFull(c, got); err != nil {
			served <- err
			return
		}
		_, err = c.Write(got)
		served <- err
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	d := New(nil)
	t.Cleanup(func() { d.Stop(context.Background()) })
	if _, err := d.Open(ctx, sdk.ModemConfig{Port: m.Path(), Model: "bg96"}); err != nil {
		t.Fatalf("Open: %v", err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	s, err := d.Dial(ctx, sdk.DialRequest{Host: "127.0.0.1", Port: port, Mode: sdk.DialPlainTCP})
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer s.Close(ctx)
	if err := s.Send(ctx, want); err != nil {
		t.Fatalf("Send: %v", err)
	}
	var got []byte
	for {
		f, err := s.Recv(ctx)
		if err != nil {
			t.Fatalf("Recv after %d bytes: %v", len(got), err)
		}
		if f.Event != nil {
			if f.Event.Kind != sdk.EventPeerClosed {
				t.Fatalf("event %v, want peer closed", f.Event.Kind)
			}
			break
		}
		got = append(got, f.Data...)
	}
	if err := <-served; err != nil {
		t.Fatalf("server: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("echo differs: got %d bytes, want %d", len(got), len(want))
	}
	if _, err := s.Recv(ctx); !errors.Is(err, io.EOF) {
		t.Fatalf("Recv after the event = %v, want io.EOF", err)
	}
	if n := m.Counters().Commands["AT+QISEND"]; n < int64(len(want)/maxSend) {
		t.Fatalf("%d AT+QISEND commands for %d bytes: the TCP dialect was not used", n, len(want))
	}
}

// TestNetworkLossEndsSessionAndDialRecovers drops the emulated BG96's
// network under an open TLS session: +QIURC: "pdpdeact" must end the
// session with a network-lost event, and the next Dial must wait for the
// network, activate the PDP context again and carry data.
func TestNetworkLossEndsSessionAndDialRecovers(t *testing.T) {
	m, err := modemsim.Start(modemsim.Config{Model: "bg96", Baud: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	pki := plugintest.NewPKI(t, plugintest.P256)
	srv := plugintest.StartServer(t, plugintest.MutualTLS(pki, 0), plugintest.Echo)
	host, port := srv.HostPort()

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	d := New(nil)
	t.Cleanup(func() { d.Stop(context.Background()) })
	if _, err := d.Open(ctx, sdk.ModemConfig{Port: m.Path(), Model: "bg96"}); err != nil {
		t.Fatalf("Open: %v", err)
	}
	if _, err := d.Provision(ctx, sdk.Bundle{CA: pki.CA.CertPEM, Cert: pki.Client.CertPEM, Key: pki.Client.KeyPEM}); err != nil {
		t.Fatalf("Provision: %v", err)
	}
	req := sdk.DialRequest{Host: host, Port: port, Mode: sdk.DialModemTLS}
	s, err := d.Dial(ctx, req)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer s.Close(ctx)
	echo(ctx, t, s, "before")

	if err := m.Fault(modemsim.Fault{Kind: modemsim.FaultNetworkLoss, Duration: time.Second}); err != nil {
		t.Fatal(err)
	}
	f, err := s.Recv(ctx)
	if err != nil || f.Event == nil || f.Event.Kind != sdk.EventNetworkLost {
		t.Fatalf("Recv = %+v, %v; want the network-lost event", f, err)
	}
	again, err := d.Dial(ctx, req)
	if err != nil {
		t.Fatalf("Dial after the network came back: %v", err)
	}
	defer again.Close(ctx)
	echo(ctx, t, again, "after")
}

// echo sends msg and waits for it to come back whole.
func echo(ctx context.Context, t *testing.T, s sdk.Session, msg string) {
	t.Helper()
	if err := s.Send(ctx, []byte(msg)); err != nil {
		t.Fatalf("Send: %v", err)
	}
	var got []byte
	for len(got) < len(msg) {
		f, err := s.Recv(ctx)
		if err != nil || f.Event != nil {
			t.Fatalf("Recv after %q: %+v, %v", got, f, err)
		}
		got = append(got, f.Data...)
	}
	if string(got) != msg {
		t.Fatalf("echo = %q, want %q", got, msg)
	}
}

// TestStatusAsksTheEmulatedModem checks the optional Status call against
// the emulated BG96: before Open it reports a closed port; with a TLS
// session open it reports the signal the test gave the cell, the LTE
// registration, the active PDP context and counted serial bytes, and leaves
// the session working; after the network denies registration it says so.
func TestStatusAsksTheEmulatedModem(t *testing.T) {
	m, err := modemsim.Start(modemsim.Config{Model: "bg96", Baud: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	pki := plugintest.NewPKI(t, plugintest.P256)
	srv := plugintest.StartServer(t, plugintest.MutualTLS(pki, 0), plugintest.Echo)
	host, port := srv.HostPort()

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	d := New(nil)
	t.Cleanup(func() { d.Stop(context.Background()) })
	if st, err := d.Status(ctx); err != nil || st.PortOpen {
		t.Fatalf("Status before Open = %+v, %v; want PortOpen false and no error", st, err)
	}
	if _, err := d.Open(ctx, sdk.ModemConfig{Port: m.Path(), Model: "bg96"}); err != nil {
		t.Fatalf("Open: %v", err)
	}
	if _, err := d.Provision(ctx, sdk.Bundle{CA: pki.CA.CertPEM, Cert: pki.Client.CertPEM, Key: pki.Client.KeyPEM}); err != nil {
		t.Fatalf("Provision: %v", err)
	}
	s, err := d.Dial(ctx, sdk.DialRequest{Host: host, Port: port, Mode: sdk.DialModemTLS})
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer s.Close(ctx)
	if err := m.SetSignal(9, 3); err != nil {
		t.Fatal(err)
	}
	echo(ctx, t, s, "before")
	st, err := d.Status(ctx)
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	if !st.PortOpen || st.SIM != "ready" || st.SignalRSSI != 9 || st.SignalBER != 3 || st.CEREG != "home" || st.Registration != "home" ||
		st.PDPActive == nil || !*st.PDPActive || st.SerialTxBytes == 0 || st.SerialRxBytes == 0 || st.Time.IsZero() {
		t.Fatalf("Status with a session open = %+v (pdp %v); want port open, SIM ready, signal 9,3, CEREG home, PDP active, bytes counted", st, st.PDPActive)
	}
	echo(ctx, t, s, "after Status")

	if err := m.Fault(modemsim.Fault{Kind: modemsim.FaultRegistrationDenied}); err != nil {
		t.Fatal(err)
	}
	st, err = d.Status(ctx)
	if err != nil || st.Registration != "denied" || st.SignalRSSI != 99 {
		t.Fatalf("Status after the network denied registration = %+v, %v; want denied, signal 99", st, err)
	}
	if err := d.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if st, err := d.Status(ctx); err != nil || st.PortOpen || st.SerialTxBytes == 0 {
		t.Fatalf("Status after Stop = %+v, %v; want PortOpen false and the last counts", st, err)
	}
}
