package simcom

import (
	"context"
	"testing"
	"time"
)

func TestStatusBeforeOpenReportsThePortClosed(t *testing.T) {
	d := New(Profile{Name: "sim7600", Sessions: 2}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := d.Status(ctx)
	if err != nil || st.PortOpen || st.SignalRSSI != 99 || st.SerialTxBytes != 0 {
		t.Fatalf("Status before Open = %+v, %v; want the port closed, no signal, nothing sent", st, err)
	}
}
