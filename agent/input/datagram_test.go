package input

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cellgate/cellgate/agent/spool"
	"github.com/cellgate/cellgate/internal/testutil"
)

// serveDatagram runs d until the test ends and checks Serve's result.
func serveDatagram(t *testing.T, d *Datagram) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Serve(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}
	t.Cleanup(stop)
	return stop
}

func sendTo(t *testing.T, network string, addr net.Addr, datagrams ...string) {
	t.Helper()
	c, err := net.Dial(network, addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, d := range datagrams {
		if _, err := c.Write([]byte(d)); err != nil {
			t.Fatalf("send: %v", err)
		}
	}
}

func TestDatagramUDPStoresGoodLinesAndLogsBadOnes(t *testing.T) {
	for _, listen := range []string{"127.0.0.1:0", "udp:127.0.0.1:0"} {
		t.Run(listen, func(t *testing.T) {
			dir := t.TempDir()
			sp := openSpool(t, spool.Options{Dir: dir})
			log, logs := testutil.Logger(t)
			d, err := NewDatagram(listen, sp, log, nil)
			if err != nil {
				t.Fatal(err)
			}
			stop := serveDatagram(t, d)
			c, err := net.DialUDP("udp", nil, d.Addr().(*net.UDPAddr))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			datagram := "{\"sensor\":\"t1\",\"value\":1}\r\n" +
				"{\"sensor\":\"t2\"}\n" + // line 2: no value
				"\n   \n" + // blank lines are skipped but counted
				"[{\"sensor\":\"t3\",\"value\":3},{\"sensor\":\"t4\",\"value\":4}]\n" +
				"not json\n" + // line 6
				`{"sensor":"t5","value":5}` // no final newline
			if _, err := c.Write([]byte(datagram)); err != nil {
				t.Fatal(err)
			}
			testutil.Eventually(t, waitLimit, "4 readings and 2 rejected lines", func() bool {
				st := d.Stats()
				return st.Accepted == 4 && st.ByReason[ReasonBadReading] == 2
			})
			stop()
			stored := storedReadings(t, sp, dir)
			var sensors []string
			for _, r := range stored {
				sensors = append(sensors, r.Sensor)
			}
			if strings.Join(sensors, ",") != "t1,t3,t4,t5" {
				t.Errorf("stored %v, want t1,t3,t4,t5 in order", sensors)
			}
			out := logs.String()
			from := c.LocalAddr().String()
			for _, want := range []string{
				`line=2 err="reading 0: field \"value\": missing"`,
				`line=6 err="body: invalid JSON at byte 0: invalid character 'n' looking for a value"`,
				"from=" + from,
			} {
				if !strings.Contains(out, want) {
					t.Errorf("log lacks %q:\n%s", want, out)
				}
			}
		})
	}
}

func TestDatagramKeepsArrivalOrder(t *testing.T) {
	dir := t.TempDir()
	sp := openSpool(t, spool.Options{Dir: dir})
	d, err := NewDatagram("127.0.0.1:0", sp, quiet, nil)
	if err != nil {
		t.Fatal(err)
	}
	stop := serveDatagram(t, d)
	const n = 300
	var grams []string
	for i := range n {
		grams = append(grams, fmt.Sprintf(`{"sensor":"seq","value":%d}`, i))
	}
	sendTo(t, "udp", d.Addr(), grams...)
	testutil.Eventually(t, waitLimit, fmt.Sprintf("%d readings", n), func() bool { return d.Stats().Accepted == n })
	stop()
	stored := storedReadings(t, sp, dir)
	for i, r := range stored {
		if r.Value != json.Number(fmt.Sprint(i)) {
			t.Fatalf("stored reading %d has value %v: order not kept", i, r.Value)
		}
	}
}

func TestDatagramUnixSocket(t *testing.T) {
	dir := t.TempDir()
	sp := openSpool(t, spool.Options{Dir: filepath.Join(dir, "spool")})
	sock := filepath.Join(dir, "cellgate.sock")
	log, logs := testutil.Logger(t)
	d, err := NewDatagram("unix:"+sock, sp, log, nil)
	if err != nil {
		t.Fatal(err)
	}
	stop := serveDatagram(t, d)
	sendTo(t, "unixgram", d.Addr(), `{"sensor":"t1","value":1}`+"\n"+`{"sensor":"t2","value":2}`)
	// A datagram bigger than the read buffer arrives cut: it is dropped
	// whole, not stored half.
	huge := `{"sensor":"t3","value":"` + strings.Repeat("x", maxDatagram) + `"}`
	sendTo(t, "unixgram", d.Addr(), huge)
	testutil.Eventually(t, waitLimit, "2 readings and the oversized datagram", func() bool {
		st := d.Stats()
		return st.Accepted == 2 && st.ByReason[ReasonTooLarge] == 1
	})
	if !strings.Contains(logs.String(), "larger than the limit") || !strings.Contains(logs.String(), "from=(unnamed)") {
		t.Errorf("log:\n%s", logs.String())
	}
	stop()
	if _, err := os.Lstat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket file left behind after Serve: %v", err)
	}
	if err := d.Close(); err != nil {
		t.Errorf("Close after Serve returned: %v", err)
	}
}

func TestDatagramUnixSocketPathRules(t *testing.T) {
	dir := t.TempDir()
	sp := openSpool(t, spool.Options{Dir: filepath.Join(dir, "spool")})

	// A stale socket (its listener gone without cleaning up) is replaced.
	stale := filepath.Join(dir, "stale.sock")
	old, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: stale, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	old.Close() // unixgram listeners leave their file behind
	if _, err := os.Lstat(stale); err != nil {
		t.Fatalf("expected a stale socket file: %v", err)
	}
	d, err := NewDatagram("unix:"+stale, sp, quiet, nil)
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	// While d listens, a second input on the same path is refused.
	if d2, err := NewDatagram("unix:"+stale, sp, quiet, nil); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("second listener on a live socket: %v", err)
		if d2 != nil {
			d2.Close()
		}
	}
	if err := d.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := d.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}

	// A regular file is never replaced.
	file := filepath.Join(dir, "data.txt")
	if err := os.WriteFile(file, []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := NewDatagram("unix:"+file, sp, quiet, nil); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("regular file at the socket path: %v", err)
	}
	if b, _ := os.ReadFile(file); string(b) != "precious" {
		t.Error("the regular file was touched")
	}
}

func TestNewDatagramRefusesBadAddresses(t *testing.T) {
	for _, listen := range []string{"unix:", "nonsense", "udp:", "udp:127.0.0.1", "udp:127.0.0.1:99999", "unix:" + filepath.Join(t.TempDir(), "missing", "dir", "s.sock")} {
		d, err := NewDatagram(listen, failingSink{}, quiet, nil)
		if err == nil {
			d.Close()
			t.Errorf("NewDatagram(%q) succeeded", listen)
			continue
		}
		if !strings.HasPrefix(err.Error(), "datagram input: ") {
			t.Errorf("NewDatagram(%q) error %q lacks context", listen, err)
		}
	}
}

func TestDatagramSinkFailureIsCountedAndLogged(t *testing.T) {
	log, logs := testutil.Logger(t)
	d, err := NewDatagram("127.0.0.1:0", failingSink{fmt.Errorf("append: %w", spool.ErrFull)}, log, nil)
	if err != nil {
		t.Fatal(err)
	}
	serveDatagram(t, d)
	sendTo(t, "udp", d.Addr(), `{"sensor":"t1","value":1}`+"\n"+`{"sensor":"t1","value":2}`)
	testutil.Eventually(t, waitLimit, "2 lost readings", func() bool { return d.Stats().ByReason[ReasonSpoolFull] == 2 })
	if st := d.Stats(); st.Accepted != 0 || totalRejected(st) != 2 {
		t.Errorf("Stats = %+v", st)
	}
	if !strings.Contains(logs.String(), "readings lost") || !strings.Contains(logs.String(), "spool: full") {
		t.Errorf("log:\n%s", logs.String())
	}
}

func TestDatagramShutdownStoresWhatWasReceived(t *testing.T) {
	dir := t.TempDir()
	sp := openSpool(t, spool.Options{Dir: dir})
	gate := newGatedSink(sp)
	d, err := NewDatagram("127.0.0.1:0", gate, quiet, nil)
	if err != nil {
		t.Fatal(err)
	}
	stop := serveDatagram(t, d)
	sendTo(t, "udp", d.Addr(), `{"sensor":"t1","value":1}`)
	<-gate.arrived // the append is in progress, held
	stopped := make(chan struct{})
	go func() { stop(); close(stopped) }()
	close(gate.gate)
	<-stopped
	if stored := storedReadings(t, sp, dir); len(stored) != 1 {
		t.Errorf("a reading received before shutdown was not stored: %d stored", len(stored))
	}
}

func TestLogLimiterBoundsLinesPerWindow(t *testing.T) {
	l := newLogLimiter()
	t0 := l.start.Add(l.window) // the first call opens a window
	allowed := 0
	for range 25 {
		if ok, _ := l.allow(t0); ok {
			allowed++
		}
	}
	if allowed != l.burst {
		t.Errorf("%d lines allowed in one window, want %d", allowed, l.burst)
	}
	ok, suppressed := l.allow(t0.Add(l.window))
	if !ok || suppressed != 15 {
		t.Errorf("next window: allowed %v, suppressed %d; want true, 15", ok, suppressed)
	}
}
