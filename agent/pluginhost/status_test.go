package pluginhost_test

import (
	"crypto/rand"
	"sync"
	"testing"
	"time"

	"github.com/cellgate/cellgate/sdk"
	"github.com/cellgate/cellgate/sdk/modemsim"
)

// TestRealSIM7600StatusFollowsTheModem asks the real plugin for the
// emulated modem's state through the host while a session carries 128 KiB
// both ways: the polls answer, the session's bytes come back intact (no
// query interleaved with an AT+CCHSEND), and the state follows the modem's
// signal and a network loss.
func TestRealSIM7600StatusFollowsTheModem(t *testing.T) {
	modem, h, host, port := startReadySIM7600(t)

	st, err := h.Status(testCtx(t, 30*time.Second))
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	dbm, ok := st.SignalDBM()
	if !st.PortOpen || st.SIM != "ready" || st.Registration != "home" || st.CREG != "home" || st.CEREG != "home" ||
		st.SignalRSSI != 22 || !ok || dbm != -69 || st.PDPActive == nil || !*st.PDPActive || st.SerialTxBytes == 0 || st.SerialRxBytes == 0 || st.Time.IsZero() {
		t.Fatalf("Status = %+v; want the emulated modem registered at home, rssi 22 (-69 dBm), PDP up, serial bytes counted", st)
	}

	sess := dialSIM7600(t, h, sdk.DialRequest{Host: host, Port: port, Mode: sdk.DialModemTLS}, "Dial")
	data := make([]byte, 128<<10)
	rand.Read(data)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var polls int
	var pollErr error
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := h.Status(testCtx(t, 30*time.Second)); err != nil {
				pollErr = err
				return
			}
			polls++
		}
	})
	roundTrip(t, sess, string(data))
	close(stop)
	wg.Wait()
	if pollErr != nil || polls == 0 {
		t.Fatalf("Status during the session: %d polls answered, then %v", polls, pollErr)
	}
	t.Logf("%d status polls answered while 128 KiB went through the session", polls)

	if err := modem.SetSignal(5, 3); err != nil {
		t.Fatal(err)
	}
	if st, err = h.Status(testCtx(t, 30*time.Second)); err != nil || st.SignalRSSI != 5 || st.SignalBER != 3 {
		t.Fatalf("Status after SetSignal(5, 3) = %+v, %v", st, err)
	}
	if err := modem.Fault(modemsim.Fault{Kind: modemsim.FaultNetworkLoss}); err != nil {
		t.Fatal(err)
	}
	if st, err = h.Status(testCtx(t, 30*time.Second)); err != nil || st.Registration != "searching" || st.SignalRSSI != 99 {
		t.Fatalf("Status during a network loss = %+v, %v; want searching without signal", st, err)
	}
	if _, ok := st.SignalDBM(); ok {
		t.Errorf("rssi 99 converts to a dBm figure")
	}
}
