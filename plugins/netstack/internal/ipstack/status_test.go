package ipstack

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/cellgate/cellgate/sdk"
)

func TestStatusReportsTheHostsInterfaces(t *testing.T) {
	tr := New(slog.New(slog.DiscardHandler))
	st, err := tr.Status(ctxFor(t))
	if err != nil || st.PortOpen || st.SignalRSSI != 99 || st.Time.IsZero() {
		t.Fatalf("Status before Open = %+v, %v; want the port closed, no signal", st, err)
	}
	tr = newTransport(t, "")
	st, err = tr.Status(ctxFor(t))
	if err != nil {
		t.Fatal(err)
	}
	_, ifaces, err := localAddr("")
	if err != nil {
		t.Fatal(err)
	}
	want := sdk.ModemStatus{PortOpen: true, SignalRSSI: 99, SignalBER: 99, Registration: "not registered"}
	if len(ifaces) > 0 {
		want.Registration, want.Operator = "home", strings.Join(ifaces, ", ")
	}
	if st.PortOpen != want.PortOpen || st.Registration != want.Registration || st.Operator != want.Operator ||
		st.PDPActive == nil || *st.PDPActive != (len(ifaces) > 0) || st.SerialTxBytes != 0 {
		t.Fatalf("Status after Open = %+v; want %+v with pdp_active %v", st, want, len(ifaces) > 0)
	}
	if _, ok := st.SignalDBM(); ok {
		t.Error("the host's IP stack reports a signal")
	}
}
