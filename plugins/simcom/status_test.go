package simcom

import (
	"context"
	"testing"
	"time"
)

func TestSimStateNamesTheSIM(t *testing.T) {
	for in, want := range map[string]string{
		"READY": "ready", " ready ": "ready", "SIM not inserted": "absent", "SIM PIN": "locked",
		"SIM PUK": "locked", "SIM busy": "busy", "PH-NET PIN": "locked", "SIM failure": "sim failure",
	} {
		if got := simState(in); got != want {
			t.Errorf("simState(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestBestRegistrationPrefersWhatCarriesData(t *testing.T) {
	for _, c := range []struct {
		regs []string
		want string
	}{
		{[]string{"searching", "", "home"}, "home"},
		{[]string{"roaming", "searching", "denied"}, "roaming"},
		{[]string{"not registered", "denied", ""}, "denied"},
		{[]string{"", "", ""}, "unknown"},
		{nil, "unknown"},
	} {
		if got := bestRegistration(c.regs...); got != c.want {
			t.Errorf("bestRegistration(%q) = %q, want %q", c.regs, got, c.want)
		}
	}
}

func TestStatusBeforeOpenReportsThePortClosed(t *testing.T) {
	d := New(Profile{Name: "sim7600", Sessions: 2}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := d.Status(ctx)
	if err != nil || st.PortOpen || st.SignalRSSI != 99 || st.SerialTxBytes != 0 {
		t.Fatalf("Status before Open = %+v, %v; want the port closed, no signal, nothing sent", st, err)
	}
}
