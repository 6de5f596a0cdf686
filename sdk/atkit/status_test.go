package atkit_test

import (
	"bytes"
	"io"
	"testing"

	"github.com/cellgate/cellgate/sdk/atkit"
)

func TestSimStateNamesTheSIM(t *testing.T) {
	for in, want := range map[string]string{
		"READY": "ready", " ready ": "ready", "SIM not inserted": "absent", "SIM PIN": "locked",
		"SIM PUK": "locked", "SIM busy": "busy", "PH-NET PIN": "locked", "SIM failure": "sim failure",
	} {
		if got := atkit.SIMState(in); got != want {
			t.Errorf("SIMState(%q) = %q, want %q", in, got, want)
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
		if got := atkit.BestRegistration(c.regs...); got != c.want {
			t.Errorf("BestRegistration(%q) = %q, want %q", c.regs, got, c.want)
		}
	}
}

// rwc is an in-memory line: what is written goes to out, reads come from in.
type rwc struct {
	in     *bytes.Reader
	out    bytes.Buffer
	closed bool
}

func (l *rwc) Read(b []byte) (int, error)  { return l.in.Read(b) }
func (l *rwc) Write(b []byte) (int, error) { return l.out.Write(b) }
func (l *rwc) Close() error                { l.closed = true; return nil }

func TestSerialCountersCountBothWays(t *testing.T) {
	var c atkit.SerialCounters
	inner := &rwc{in: bytes.NewReader([]byte("OK\r\n+CSQ: 22,99\r\n"))}
	line := c.Wrap(inner)
	if _, err := io.WriteString(line, "AT+CSQ\r"); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(line)
	if err != nil || string(got) != "OK\r\n+CSQ: 22,99\r\n" {
		t.Fatalf("read %q, %v: want what the line holds", got, err)
	}
	if tx, rx := c.Counts(); tx != 7 || rx != 17 || inner.out.String() != "AT+CSQ\r" {
		t.Fatalf("Counts() = %d, %d with %q written; want 7, 17", tx, rx, inner.out.String())
	}
	if err := line.Close(); err != nil || !inner.closed {
		t.Fatalf("Close = %v, closed %v: want the line closed", err, inner.closed)
	}
	c.Reset()
	if tx, rx := c.Counts(); tx != 0 || rx != 0 {
		t.Fatalf("after Reset, Counts() = %d, %d", tx, rx)
	}
}
