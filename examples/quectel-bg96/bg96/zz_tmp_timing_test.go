package bg96

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/cellgate/cellgate/sdk"
	"github.com/cellgate/cellgate/sdk/atkit"
	"github.com/cellgate/cellgate/sdk/modemsim"
)

type tlog struct {
	io.ReadWriteCloser
	t0 time.Time
	on *bool
}

func (l *tlog) Read(b []byte) (int, error) {
	n, err := l.ReadWriteCloser.Read(b)
	if *l.on && n > 0 {
		fmt.Fprintf(os.Stderr, "%8.2fms R %q\n", float64(time.Since(l.t0).Microseconds())/1000, trunc(b[:n]))
	}
	return n, err
}
func (l *tlog) Write(b []byte) (int, error) {
	if *l.on {
		fmt.Fprintf(os.Stderr, "%8.2fms W %d %q\n", float64(time.Since(l.t0).Microseconds())/1000, len(b), trunc(b))
	}
	return l.ReadWriteCloser.Write(b)
}
func trunc(b []byte) []byte {
	if len(b) > 24 {
		return b[:24]
	}
	return b
}

func TestTmpTiming(t *testing.T) {
	ctx := context.Background()
	m, _ := modemsim.Start(modemsim.Config{Model: "bg96", Baud: 115200})
	defer m.Close()
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go func() { c, _ := ln.Accept(); io.Copy(io.Discard, c) }()
	on := false
	d := New(nil)
	d.openLine = func(ctx context.Context, name string, baud int) (io.ReadWriteCloser, error) {
		p, err := atkit.OpenPort(ctx, name, atkit.PortConfig{Baud: baud})
		return &tlog{ReadWriteCloser: p, t0: time.Now(), on: &on}, err
	}
	defer d.Stop(ctx)
	if _, err := d.Open(ctx, sdk.ModemConfig{Port: m.Path(), Model: "bg96"}); err != nil {
		t.Fatal(err)
	}
	s, err := d.Dial(ctx, sdk.DialRequest{Host: "127.0.0.1", Port: ln.Addr().(*net.TCPAddr).Port, Mode: sdk.DialPlainTCP})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	c0 := m.Counters()
	t0 := time.Now()
	for i := 0; i < 3; i++ {
		s.Send(ctx, make([]byte, 64<<10))
	}
	c1 := m.Counters()
	fmt.Fprintf(os.Stderr, "%v for 3x64KiB, %d QISEND, %d ATs\n", time.Since(t0), c1.Commands["AT+QISEND"]-c0.Commands["AT+QISEND"], c1.Commands["AT"]-c0.Commands["AT"])
	for k, v := range c1.Commands {
		if v != c0.Commands[k] {
			fmt.Fprintln(os.Stderr, k, v-c0.Commands[k])
		}
	}
}
