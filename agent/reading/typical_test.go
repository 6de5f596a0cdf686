package reading

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// A scenario is a way readings typically reach the agent. All of them are
// the 73-byte example shape, {"sensor":"t1","value":21.5,"unit":"C"}
// plus whatever the sender adds, from four sensors reporting once a second.
type scenario struct {
	name string
	// body renders what the sensor sends for its k-th reading, received at
	// recv; rng draws what varies.
	body func(rng *rand.Rand, sensor, unit, value string, recv time.Time) string
}

var scenarios = []scenario{
	{"agent assigns id and ts", func(_ *rand.Rand, sensor, unit, value string, _ time.Time) string {
		return fmt.Sprintf(`{"sensor":%q,"value":%s,"unit":%q}`, sensor, value, unit)
	}},
	{"sensor sends ts", func(rng *rand.Rand, sensor, unit, value string, recv time.Time) string {
		measured := recv.Add(-time.Duration(rng.IntN(3000)) * time.Millisecond)
		return fmt.Sprintf(`{"sensor":%q,"ts":%q,"value":%s,"unit":%q}`, sensor, measured.Format(time.RFC3339Nano), value, unit)
	}},
	{"sensor sends random UUID ids", func(rng *rand.Rand, sensor, unit, value string, _ time.Time) string {
		id := fmt.Sprintf("%08x-%04x-4%03x-%04x-%012x", rng.Uint32(), rng.IntN(1<<16), rng.IntN(1<<12), 0x8000|rng.IntN(1<<14), rng.Uint64()&(1<<48-1))
		return fmt.Sprintf(`{"id":%q,"sensor":%q,"value":%s,"unit":%q}`, id, sensor, value, unit)
	}},
}

// typicalRecords returns n stored readings of a scenario, reproducibly:
// sensors t1, t2 (°C, random walk in 0.1 steps), h1 (% RH) and p1 (hPa)
// each report once a second, received a few milliseconds apart, parsed by
// Parse and stored as canonical JSON, exactly as the HTTP input does.
func typicalRecords(tb testing.TB, sc scenario, n int) [][]byte {
	tb.Helper()
	rng := rand.New(rand.NewPCG(20241127, uint64(len(sc.name))))
	ids, err := NewIDGenerator(bytes.NewReader([]byte{0x5e, 0x11, 0x0a, 0x7e, 0x33, 0x91}))
	if err != nil {
		tb.Fatal(err)
	}
	type sensor struct {
		name, unit string
		tenths     int // the value in tenths
		step, lo   int
	}
	sensors := []*sensor{{"t1", "C", 215, 1, -400}, {"t2", "C", 187, 1, -400}, {"h1", "%", 452, 5, 0}, {"p1", "hPa", 10132, 1, 8000}}
	start := time.Date(2024, 11, 27, 4, 0, 0, 0, time.UTC)
	out := make([][]byte, 0, n)
	for k := 0; len(out) < n; k++ {
		s := sensors[k%len(sensors)]
		s.tenths = max(s.tenths+(rng.IntN(3)-1)*s.step, s.lo)
		value := fmt.Sprintf("%d.%d", s.tenths/10, s.tenths%10)
		recv := start.Add(time.Duration(k/len(sensors))*time.Second + time.Duration(k%len(sensors)*3+rng.IntN(3))*time.Millisecond)
		rs, err := ParseWithIDs([]byte(sc.body(rng, s.name, s.unit, value, recv)), recv, Limits{}, ids)
		if err != nil {
			tb.Fatal(err)
		}
		b, err := rs[0].MarshalJSON()
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}
