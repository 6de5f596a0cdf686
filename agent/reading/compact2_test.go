package reading

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cellgate/cellgate/internal/testutil"
)

// oneSensorGen makes the readings of one sensor as the agent receives
// them: every 10 s with up to 40 ms of jitter, ts and id assigned on
// receipt, a random walk in steps of 0.1 °C, a unit and a site tag.
type oneSensorGen struct {
	rng   *rand.Rand
	ids   *IDGenerator
	at    time.Time
	tenth int
}

func newOneSensorGen(tb testing.TB, seed uint64) *oneSensorGen {
	tb.Helper()
	ids, err := NewIDGenerator(bytes.NewReader([]byte{0x5e, 0x11, 0x0a, 0x7e, 0x33, byte(seed)}))
	if err != nil {
		tb.Fatal(err)
	}
	return &oneSensorGen{rng: rand.New(rand.NewPCG(seed, 2)), ids: ids, at: time.Date(2026, 12, 6, 4, 0, 0, 0, time.UTC), tenth: 215}
}

func (g *oneSensorGen) now() time.Time { return g.at }

func (g *oneSensorGen) next(tb testing.TB, n int) [][]byte {
	tb.Helper()
	out := make([][]byte, n)
	for i := range out {
		g.tenth += g.rng.IntN(3) - 1
		recv := g.at.Add(time.Duration(g.rng.IntN(40)) * time.Millisecond)
		g.at = g.at.Add(10 * time.Second)
		body := fmt.Sprintf(`{"sensor":"temp.inlet","value":%s,"unit":"°C","tags":{"site":"plant-7"}}`, decimalText(g.tenth, 1))
		out[i] = parseOne(tb, body, recv, g.ids)
	}
	return out
}

// skip moves the generator d ahead as if it had made a reading every 10 s.
func (g *oneSensorGen) skip(d time.Duration) {
	for range int(d / (10 * time.Second)) {
		g.ids.Next(g.at)
		g.at = g.at.Add(10 * time.Second)
	}
}

// fourSensorGen has the shape of agent/airbytes_bench_test.go's newAirGen
// (copied, not imported): four sensors (t1, t2 in C, h1 in %RH, p1 in hPa)
// each a random walk in steps of up to 0.2, every reading 10 s after the
// previous one of its sensor, 37 ms apart, ts sent by the sensor, ids
// assigned by the agent, a site tag.
type fourSensorGen struct {
	rng   *rand.Rand
	ids   *IDGenerator
	ts    time.Time
	value [4]float64
	k     int
}

var fourSensors = [4]struct{ name, unit string }{{"t1", "C"}, {"t2", "C"}, {"h1", "%RH"}, {"p1", "hPa"}}

func newFourSensorGen(tb testing.TB, seed uint64) *fourSensorGen {
	tb.Helper()
	ids, err := NewIDGenerator(bytes.NewReader([]byte{0x5e, 0x11, 0x0a, 0x7e, 0x34, byte(seed)}))
	if err != nil {
		tb.Fatal(err)
	}
	return &fourSensorGen{rng: rand.New(rand.NewPCG(seed, seed)), ids: ids,
		ts: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), value: [4]float64{21.5, 19.8, 45.0, 1013.2}}
}

func (g *fourSensorGen) next(tb testing.TB, n int) [][]byte {
	tb.Helper()
	out := make([][]byte, n)
	for i := range out {
		s := g.k % 4
		if s == 0 {
			g.ts = g.ts.Add(10 * time.Second)
		}
		g.value[s] = math.Round((g.value[s]+float64(g.rng.IntN(5)-2)/10)*10) / 10
		body := fmt.Sprintf(`{"sensor":%q,"ts":%q,"value":%.1f,"unit":%q,"tags":{"site":"depot-7"}}`,
			fourSensors[s].name, g.ts.Add(time.Duration(s)*37*time.Millisecond).Format("2006-01-02T15:04:05.000Z07:00"), g.value[s], fourSensors[s].unit)
		out[i] = parseOne(tb, body, g.ts.Add(500*time.Millisecond), g.ids)
		g.k++
	}
	return out
}

func (g *fourSensorGen) now() time.Time { return g.ts }

func (g *fourSensorGen) skip(d time.Duration) {
	for range int(d/(10*time.Second)) * 4 {
		g.ids.Next(g.ts)
	}
	g.ts = g.ts.Add(d)
}

func parseOne(tb testing.TB, body string, recv time.Time, ids *IDGenerator) []byte {
	tb.Helper()
	rs, err := ParseWithIDs([]byte(body), recv, Limits{}, ids)
	if err != nil {
		tb.Fatal(err)
	}
	b, err := rs[0].MarshalJSON()
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// contextSeq is a run of batches through one ContextEncoder whose clock
// the test moves.
type contextSeq struct {
	clock time.Time
	enc   *ContextEncoder
	seen  map[uint32]*CompactContext
}

func newContextSeq(o ContextOptions) *contextSeq {
	q := &contextSeq{clock: time.Date(2026, 12, 6, 4, 0, 0, 0, time.UTC), seen: map[uint32]*CompactContext{}}
	o.Now = func() time.Time { return q.clock }
	q.enc = NewContextEncoder(o)
	return q
}

func (q *contextSeq) lookup(id uint32) (*CompactContext, bool) { c, ok := q.seen[id]; return c, ok }

// encode encodes a batch, requires it to decode (with the contexts seen so
// far) to the same stored bytes, and returns the payload and its context.
func (q *contextSeq) encode(t *testing.T, device string, records [][]byte) ([]byte, *CompactContext) {
	t.Helper()
	p, c, err := q.enc.Encode(device, records)
	if err != nil {
		t.Fatal(err)
	}
	if c != nil {
		again, err := ParseCompactContext(c.Bytes())
		if err != nil || again.ID() != c.ID() {
			t.Fatalf("the context %s does not parse back: %v", c.HexID(), err)
		}
		q.seen[c.ID()] = again
	}
	b, err := DecodeCompact(p, q.lookup)
	if err != nil {
		t.Fatalf("%d readings: %v", len(records), err)
	}
	if b.DeviceID != device || !reflect.DeepEqual(marshalAll(t, b.Readings), records) && len(records) > 0 {
		t.Fatalf("%d readings: the round trip changed the device id or the stored bytes", len(records))
	}
	return p, c
}

// misfitRecords are readings the edge-case context does not describe: a
// new sensor with a unit and tags, a known one with another unit and none.
func misfitRecords(t testing.TB, at time.Time) [][]byte {
	return marshalAll(t, []Reading{
		{ID: "client-8", Sensor: "new.sensor", TS: at, Value: json.Number("1.25"), Unit: "kPa", Tags: map[string]string{"line": "4"}},
		{ID: "client-9", Sensor: "new.sensor", TS: at.Add(time.Second), Value: json.Number("1.5"), Unit: "kPa", Tags: map[string]string{"line": "4"}},
		{ID: "client-10", Sensor: "t1", TS: at.Add(2 * time.Second), Value: json.Number("-12.3"), Unit: "K"},
	})
}

// TestContextEncoderRoundTripsEveryForm encodes, inline and by reference,
// batches of every kind (edge cases, readings the context does not
// describe, realistic ones of every size from 0 to 40, the one- and
// four-sensor generators) and requires each to decode to the stored bytes.
func TestContextEncoderRoundTripsEveryForm(t *testing.T) {
	for _, inline := range []bool{false, true} {
		t.Run(fmt.Sprintf("inline=%v", inline), func(t *testing.T) {
			q := newContextSeq(ContextOptions{Inline: inline, MinRebuild: time.Minute})
			edge := edgeCaseRecords(t)
			q.encode(t, "gw-0001", edge)
			for range 5 {
				q.clock = q.clock.Add(time.Hour)
				q.encode(t, "gw-0001", append(slices.Clone(edge), misfitRecords(t, q.clock)...))
			}
			all := realisticRecords(t, 40, 9)
			for n := 0; n <= len(all); n++ {
				q.encode(t, "gw-0001", all[:n])
			}
			one, four := newOneSensorGen(t, 4), newFourSensorGen(t, 4)
			for range 3 {
				q.encode(t, "gw-0002", one.next(t, 6))
				q.encode(t, "gw-0002", four.next(t, 7))
			}
			q.encode(t, "gw-0002", marshalAll(t, everyFieldReadings(t)))
		})
	}
}

// TestContextEncoderPolicy walks the context-change policy of
// docs/payloads.md step by step.
func TestContextEncoderPolicy(t *testing.T) {
	q := newContextSeq(ContextOptions{MinRebuild: 10 * time.Minute})
	one := newOneSensorGen(t, 5)
	_, first := q.encode(t, "gw-0001", one.next(t, 6))
	if len(first.sensors) != 1 || first.sensors[0].interval < 9960 || first.sensors[0].interval > 10040 || first.sensors[0].exp != -1 || first.sensors[0].unit != "°C" {
		t.Fatalf("first context describes %+v", first.sensors)
	}
	if _, c := q.encode(t, "gw-0001", one.next(t, 6)); c != first {
		t.Fatal("a batch the context describes made a new context")
	}
	extra := func() [][]byte {
		return append(one.next(t, 3), misfitRecords(t, one.at)...)
	}
	// A new sensor in three batches, but within MinRebuild: no new context.
	for range 3 {
		if _, c := q.encode(t, "gw-0001", extra()); c != first {
			t.Fatal("a new context within MinRebuild")
		}
	}
	q.clock = q.clock.Add(10 * time.Minute)
	_, second := q.encode(t, "gw-0001", extra())
	if second == first || len(second.sensors) != 3 {
		t.Fatalf("after MinRebuild, with new.sensor in 4 batches: context of %d sensors, want 3", len(second.sensors))
	}
	if s, _ := second.sensor("t1"); s.unit != "K" {
		t.Errorf("t1 kept appearing in K; the new context says %q", s.unit)
	}
	// Readings in another device's name start a context of their own.
	if _, c := q.encode(t, "gw-0002", one.next(t, 6)); c.DeviceID() != "gw-0002" || len(c.sensors) != 1 {
		t.Fatalf("device change: context of %q with %d sensors", c.DeviceID(), len(c.sensors))
	}
	// The id counter wrapping into the next run makes a new context at once.
	_, cur := q.encode(t, "gw-0002", one.next(t, 2))
	wrapped := Reading{ID: encodeULID(idFromParts(uint64(one.at.UnixMilli()), cur.run+1, 0)), Sensor: "temp.inlet", TS: one.at, Value: json.Number("21.5"), Unit: "°C", Tags: map[string]string{"site": "plant-7"}}
	if _, c := q.encode(t, "gw-0002", marshalAll(t, []Reading{wrapped})); c == cur || c.run != cur.run+1 {
		t.Fatal("a batch of the next run did not make a new context")
	}
	// A context made without ULIDs is replaced by the first batch with one,
	// once: client ULIDs of other runs later do not make more.
	q = newContextSeq(ContextOptions{})
	_, noRun := q.encode(t, "gw-0003", misfitRecords(t, q.clock))
	_, withRun := q.encode(t, "gw-0003", one.next(t, 2))
	if withRun == noRun || withRun.run != cur.run {
		t.Fatal("the first batch with agent ids kept a context without a run")
	}
	other := wrapped
	other.ID = encodeULID(idFromParts(uint64(one.at.UnixMilli()), 12345, 9))
	if _, c := q.encode(t, "gw-0003", marshalAll(t, []Reading{other})); c != withRun {
		t.Fatal("a client ULID of another run made a new context")
	}
}

// TestContextEncoderBoundsHostileSensors: a sensor name never seen twice
// in every reading makes no new context however long it goes on, and
// hundreds of sensors that keep appearing make a context of at most
// MaxContextSensors and MaxContextBytes.
func TestContextEncoderBoundsHostileSensors(t *testing.T) {
	q := newContextSeq(ContextOptions{MinRebuild: time.Minute})
	one := newOneSensorGen(t, 6)
	_, first := q.encode(t, "gw-0001", one.next(t, 6))
	for b := range 300 {
		q.clock = q.clock.Add(time.Hour)
		rs := make([]Reading, 20)
		for i := range rs {
			rs[i] = Reading{ID: fmt.Sprintf("c-%d-%d", b, i), Sensor: fmt.Sprintf("rnd.%d.%d", b, i), TS: q.clock, Value: json.Number("1"), Unit: "u", Tags: map[string]string{"k": strings.Repeat("v", 200)}}
		}
		if _, c := q.encode(t, "gw-0001", marshalAll(t, rs)); c != first {
			t.Fatalf("batch %d of random sensor names made a new context of %d sensors", b, len(c.sensors))
		}
	}
	many := make([]Reading, 400)
	for i := range many {
		many[i] = Reading{ID: fmt.Sprintf("m-%d", i), Sensor: fmt.Sprintf("s%03d", i), TS: q.clock, Value: json.Number("2.5"), Unit: "unit-" + fmt.Sprint(i%7)}
	}
	var last *CompactContext
	for range 4 {
		q.clock = q.clock.Add(time.Hour)
		_, last = q.encode(t, "gw-0001", marshalAll(t, many))
	}
	if last == first || len(last.sensors) > MaxContextSensors || len(last.raw) > MaxContextBytes {
		t.Fatalf("400 sensors that keep appearing: context of %d sensors, %d bytes", len(last.sensors), len(last.raw))
	}
	if last.run != first.run || last.counter0 != first.counter0 {
		t.Error("a context made from batches of client ids dropped the agent's id run")
	}
	t.Logf("400 sensors: the context holds %d in %d bytes", len(last.sensors), len(last.raw))
}

// TestContextEncoderIsSafeForConcurrentUse encodes from several
// goroutines at once (run with -race); every payload decodes.
func TestContextEncoderIsSafeForConcurrentUse(t *testing.T) {
	e := NewContextEncoder(ContextOptions{})
	records := realisticRecords(t, 60, 10)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Go(func() {
			for i := range 20 {
				batch := records[(w+i)%50 : (w+i)%50+10]
				p, c, err := e.Encode("gw-0001", batch)
				if err == nil {
					_, err = DecodeCompact(p, func(id uint32) (*CompactContext, bool) { return c, id == c.ID() })
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestDecodeCompactNeedsTheContext: a batch that references a context the
// caller does not have is refused naming the id in 8 hex digits, by
// DecodeCompact and by the stateless decoders.
func TestDecodeCompactNeedsTheContext(t *testing.T) {
	e := NewContextEncoder(ContextOptions{})
	p, c, err := e.Encode("gw-0001", realisticRecords(t, 6, 11))
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("at byte 2 (context): context %08x is not known", c.ID())
	for name, decode := range map[string]func() error{
		"DecodeCompact":  func() error { _, err := DecodeCompact(p, nil); return err },
		"DecodeBatch":    func() error { _, err := DecodeBatch(ContentTypeCompact, "", p); return err },
		"Encoder.Decode": func() error { _, err := mustEncoder(t, EncodingCompact).Decode(p); return err },
		"other context": func() error {
			_, err := DecodeCompact(p, func(uint32) (*CompactContext, bool) { return nil, false })
			return err
		},
	} {
		if err := decode(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", name, err, want)
		}
	}
}

// TestCompactV2ColumnForms: the single-entry forms appear where they
// should, and the decoder reads both spellings of the same batch alike.
func TestCompactV2ColumnForms(t *testing.T) {
	one := newOneSensorGen(t, 7)
	e := NewContextEncoder(ContextOptions{})
	records := one.next(t, 6)
	p, c, err := e.Encode("gw-0001", records)
	if err != nil {
		t.Fatal(err)
	}
	var arr []any
	if err := cborDec.Unmarshal(p, &arr); err != nil {
		t.Fatalf("%x is not the plain CBOR batch: %v", p, err)
	}
	if len(arr) != 7 || arr[1] != uint64(c.ID()) || arr[2] != uint64(0) || arr[3] != uint64(0) || arr[6] != uint64(0) {
		t.Fatalf("one sensor, agent ids: %v, want [2, %d, 0, 0 (one sensor), ts, values, 0 (consecutive ids)]", arr, c.ID())
	}
	// The same batch with every column spelled out as an array.
	n := len(arr[5].([]any))
	spelled := []any{arr[0], arr[1], arr[2], repeat(arr[3], n), arr[4], arr[5], append([]any{arr[6]}, repeat(uint64(0), n-1)...),
		[]any{}, repeat(nil, n), repeat(nil, n)}
	raw, err := cborEnc.Marshal(spelled)
	if err != nil {
		t.Fatal(err)
	}
	a, err := DecodeCompact(p, func(uint32) (*CompactContext, bool) { return c, true })
	if err != nil {
		t.Fatal(err)
	}
	b, err := DecodeCompact(raw, func(uint32) (*CompactContext, bool) { return c, true })
	if err != nil || !reflect.DeepEqual(a, b) {
		t.Fatalf("the spelled-out batch decodes differently: %v", err)
	}
}

func repeat(v any, n int) []any {
	out := make([]any, n)
	for i := range out {
		out[i] = v
	}
	return out
}

// TestParseCompactContextRefuses: every way a context can be off the
// schema is refused with its byte offset.
func TestParseCompactContextRefuses(t *testing.T) {
	good, err := newCompactContext("gw-1", 0x010203040506, 7, 1796529600000, []contextSensor{
		{name: "t1", unit: "C", tags: map[string]string{"site": "b"}, interval: 10000, exp: -1},
		{name: "h1", interval: 0, exp: 0},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	mk := func(v ...any) []byte {
		b, err := cborEnc.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	run := []byte{1, 2, 3, 4, 5, 6}
	big := make([]any, 300)
	for i := range big {
		big[i] = []any{0, nil, nil, 0, 0}
	}
	two := []any{[]any{0, nil, nil, 10, 0, 3}, []any{1, nil, nil, 10, 0}}
	if c, err := ParseCompactContext(mk(1, "gw", run, 0, 0, []any{"a", "b"}, two, []any{1, 0})); err != nil || !slices.Equal(c.cycle, []int{1, 0}) || !c.sensors[0].hasPhase || c.sensors[1].hasPhase {
		t.Fatalf("a context with a phase and a cycle: %v", err)
	}
	nonShortest := slices.Clone(good.raw)
	nonShortest = slices.Concat(nonShortest[:14], []byte{0x18, 0x07}, nonShortest[15:]) // counter0 7 in two bytes
	for _, tc := range []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, "at byte 0 (context): unexpected EOF"},
		{"not an array", []byte{0xa0}, "at byte 0 (context): initial byte 0xa0 is not an array"},
		{"too long", make([]byte, MaxContextBytes+1), "at byte 0 (context): 4097 bytes, more than 4096"},
		{"six elements", mk(1, "gw", run, 0, 0, []any{}), "at byte 0 (context): 6 elements, want 7"},
		{"version 2", mk(2, "gw", run, 0, 0, []any{}, []any{}), "at byte 1 (context version): 2, want 1"},
		{"device id", mk(1, "", run, 0, 0, []any{}, []any{}), "at byte 2 (device_id): device id is empty"},
		{"run of 5 bytes", mk(1, "gw", run[:5], 0, 0, []any{}, []any{}), "at byte 5 (run): []uint8, want a byte string of 6 bytes"},
		{"counter0 too big", mk(1, "gw", run, uint64(1)<<32, 0, []any{}, []any{}), "at byte 12 (counter0): 4294967296 is not an integer from 0 to 4294967295"},
		{"t0 negative", mk(1, "gw", run, 0, -1, []any{}, []any{}), "at byte 13 (t0): -1 is not an integer"},
		{"string not text", mk(1, "gw", run, 0, 0, []any{1}, []any{}), "at byte 15 (context strings[0]): uint64, want a text string"},
		{"too many sensors", mk(1, "gw", run, 0, 0, []any{"s"}, big), "at byte 17 (context sensors): 300 sensors, more than 256"},
		{"name out of range", mk(1, "gw", run, 0, 0, []any{"s"}, []any{[]any{1, nil, nil, 0, 0}}), "at byte 18 (context sensor 0): name: 1 is not an index into the 1 strings"},
		{"bad sensor name", mk(1, "gw", run, 0, 0, []any{"a b"}, []any{[]any{0, nil, nil, 0, 0}}), `at byte 20 (context sensor 0): field "sensor": character ' ' at byte 1`},
		{"sensor twice", mk(1, "gw", run, 0, 0, []any{"s"}, []any{[]any{0, nil, nil, 0, 0}, []any{0, nil, nil, 0, 0}}), `at byte 24 (context sensor 1): sensor "s" is described twice`},
		{"exponent", mk(1, "gw", run, 0, 0, []any{"s"}, []any{[]any{0, nil, nil, 0, 10000}}), "at byte 18 (context sensor 0): exponent 10000 is not an integer"},
		{"four elements", mk(1, "gw", run, 0, 0, []any{"s"}, []any{[]any{0, nil, nil, 0}}), "at byte 18 (context sensor 0): 4 elements, want 5"},
		{"unused string", mk(1, "gw", run, 0, 0, []any{"s", "x"}, []any{[]any{0, nil, nil, 0, 0}}), "at byte 14 (context): not the canonical encoding"},
		{"non-shortest integer", nonShortest, "at byte 14 (context): not the canonical encoding"},
		{"left over", append(slices.Clone(good.raw), 0), fmt.Sprintf("at byte %d (after the context): 1 bytes left over", len(good.raw))},
		{"phase of interval", mk(1, "gw", run, 0, 0, []any{"s"}, []any{[]any{0, nil, nil, 10, 0, 10}}), "at byte 18 (context sensor 0): phase 10 is not an integer from 0 to the interval 10 - 1"},
		{"phase without interval", mk(1, "gw", run, 0, 0, []any{"s"}, []any{[]any{0, nil, nil, 0, 0, 0}}), "at byte 18 (context sensor 0): phase 0 is not an integer from 0 to the interval 0 - 1"},
		{"seven-element sensor", mk(1, "gw", run, 0, 0, []any{"s"}, []any{[]any{0, nil, nil, 10, 0, 1, 1}}), "at byte 18 (context sensor 0): 7 elements, want 5 or 6"},
		{"nine elements", mk(1, "gw", run, 0, 0, []any{}, []any{}, []any{}, 0), "at byte 0 (context): 9 elements, want 7 or 8"},
		{"cycle of one", mk(1, "gw", run, 0, 0, []any{"a", "b"}, two, []any{0}), "at byte 33 (cycle): 1 entries, want at least 2"},
		{"cycle twice", mk(1, "gw", run, 0, 0, []any{"a", "b"}, two, []any{1, 1}), "at byte 35 (cycle[1]): 1 is not one of the 2 sensors not already in the cycle"},
		{"cycle beyond", mk(1, "gw", run, 0, 0, []any{"a", "b"}, two, []any{0, 2}), "at byte 35 (cycle[1]): 2 is not one of the 2 sensors"},
		{"cycle not an array", mk(1, "gw", run, 0, 0, []any{"a", "b"}, two, 0), "at byte 33 (cycle): initial byte 0x00 is not an array"},
	} {
		_, err := ParseCompactContext(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	c, err := ParseCompactContext(good.Bytes())
	if err != nil || c.ID() != good.ID() || c.HexID() != fmt.Sprintf("%08x", good.ID()) {
		t.Fatalf("the good context: %v", err)
	}
	if sum := sha256.Sum256(good.raw); binary.BigEndian.Uint32(sum[:4]) != c.ID() {
		t.Error("the id is not the first 4 bytes of SHA-256")
	}
}

// TestDecodeCompactV2Refuses: batches off the version 2 schema are refused
// with the byte offset of the problem.
func TestDecodeCompactV2Refuses(t *testing.T) {
	c, err := newCompactContext("gw-1", 0x010203040506, 7, 1796529600000, []contextSensor{{name: "t1", unit: "C", interval: 10000, exp: -1}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	lookup := func(id uint32) (*CompactContext, bool) { return c, id == c.ID() }
	id := uint64(c.ID())
	mk := func(v ...any) []byte {
		b, err := cborEnc.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, tc := range []struct {
		name string
		in   []byte
		want string
	}{
		{"six elements", mk(2, id, 0, 0, []any{0}, []any{1}), "byte 0 is 0x86: neither a compact batch (0x87 to 0x8a) nor a zlib header"},
		{"version 3", mk(3, id, 0, 0, 0, []any{1}, 0), "at byte 1 (version): byte 0x03 after a head of 7 elements: not version 1 (10 elements) or 2 (7 to 10)"},
		{"ts0 before 1970", mk(2, id, -1796529600001, 0, 0, []any{1}, 0), "at byte 7 (ts0): -1796529600001 leads out of range"},
		{"values not an array", mk(2, id, 0, 0, 0, 1, 0), "at byte 10 (values): initial byte 0x01 is not an array"},
		{"ids of two", mk(2, id, 0, 0, 0, []any{1}, []any{0, 0}), "at byte 13 (ids): 2 entries, want 1 as in values"},
		{"single text id", mk(2, id, 0, 0, 0, []any{1}, "x"), "at byte 12 (ids): a single ids entry must be an integer"},
		{"sensor beyond the context", mk(2, id, 0, 1, 0, []any{1}, 0), "reading 0: at byte 8 (sensor): 1 is not one of the context's 1 sensors"},
		{"name beyond the strings", mk(2, id, 0, -3, 0, []any{1}, 0), "reading 0: at byte 8 (sensor): 2 is not an index into the 2 strings"},
		{"unit beyond the strings", mk(2, id, 0, 0, 0, []any{1}, 0, []any{}, 5), "reading 0: at byte 14 (unit): 5 is not an index"},
		{"empty tags", mk(2, id, 0, 0, 0, []any{1}, 0, []any{}, nil, map[any]any{}), "reading 0: at byte 15 (tags): empty map"},
		{"left over", append(mk(2, id, 0, 0, 0, []any{1}, 0), 0), "at byte 13 (after the batch array): 1 bytes left over"},
		{"bad inline context", mk(2, []any{1}, 0, 0, 0, []any{1}, 0), "at byte 2 (context): 1 elements, want 7"},
		{"a context, not a batch", c.Bytes(), "at byte 0 (batch array): this is a compact context, not a batch"},
	} {
		_, err := DecodeCompact(tc.in, lookup)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}

// TestParseAssignsIDsThatCarryTheReadingsTS: an assigned id's time is the
// reading's ts when the client sent one (clamped to what a ULID holds), the
// arrival time otherwise, so the compact encodings write it as a counter
// step alone.
func TestParseAssignsIDsThatCarryTheReadingsTS(t *testing.T) {
	now := time.Date(2026, 12, 6, 4, 0, 0, 0, time.UTC)
	ids, err := NewIDGenerator(bytes.NewReader([]byte{1, 2, 3, 4, 5, 6}))
	if err != nil {
		t.Fatal(err)
	}
	rs, err := ParseWithIDs([]byte(`[{"sensor":"a","value":1,"ts":1000},{"sensor":"a","value":1},{"sensor":"a","value":1,"ts":"9999-12-31T23:59:59.999Z"}]`), now, Limits{}, ids)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []int64{1000, now.UnixMilli(), maxUnixMilli} {
		u, _ := decodeULID(rs[i].ID)
		ms, _, ctr := idParts(u)
		if int64(ms) != want || ctr != uint32(i) {
			t.Errorf("reading %d: id time %d, counter %d; want %d, %d", i, ms, ctr, want, i)
		}
	}
	if got := ids.Next(time.UnixMilli(-5)); got[:10] != "0000000000" {
		t.Errorf("a time before 1970 gives id %s, want time 0", got)
	}
}

// TestPayloadsDocV2ExampleDecodes holds docs/payloads.md's version 2
// example to the code: the context's hex parses with the id the page
// names, the batch's hex decodes with it to the lines the page prints,
// encoding those readings again gives the same bytes, and the inline form
// has the size the page says and decodes alone to the same lines.
func TestPayloadsDocV2ExampleDecodes(t *testing.T) {
	const doc = "../../docs/payloads.md"
	block := func(name string) []byte {
		b, err := hex.DecodeString(strings.TrimSpace(testutil.DocBlock(t, doc, name)))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	ctx, err := ParseCompactContext(block("compact2-context-hex"))
	if err != nil {
		t.Fatal(err)
	}
	page, err := os.ReadFile(doc)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		fmt.Sprintf("%d bytes, id `%s`", len(ctx.raw), ctx.HexID()),
		"context " + ctx.HexID() + " is not known",
		"/ctx/" + ctx.HexID(),
	} {
		if !strings.Contains(string(page), want) {
			t.Errorf("the page does not say %q", want)
		}
	}
	raw := block("compact2-example-hex")
	lookup := func(id uint32) (*CompactContext, bool) { return ctx, id == ctx.ID() }
	b, err := DecodeCompact(raw, lookup)
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	if err := b.WriteJSONLines(&got); err != nil {
		t.Fatal(err)
	}
	want := testutil.DocBlock(t, doc, "compact2-example-lines")
	if got.String() != want {
		t.Fatalf("the example decodes to\n%s\nthe page says\n%s", got.String(), want)
	}
	again, err := encodeCompactV2(ctx, false, b.Readings)
	if err != nil || !bytes.Equal(again, raw) {
		t.Fatalf("re-encoding the example gives %x, %v", again, err)
	}
	inline, err := encodeCompactV2(ctx, true, b.Readings)
	if err != nil {
		t.Fatal(err)
	}
	if n := fmt.Sprintf("six readings referencing it, %d bytes", len(raw)); !strings.Contains(string(page), n) {
		t.Errorf("the page does not say %q", n)
	}
	if n := fmt.Sprintf("rest unchanged (%d bytes)", len(inline)); !strings.Contains(string(page), n) {
		t.Errorf("the page does not say %q", n)
	}
	alone, err := DecodeCompact(inline, nil)
	if err != nil || !reflect.DeepEqual(alone, b) {
		t.Fatalf("the inline form decodes differently: %v", err)
	}
}

// TestContextEncoderLearnsPhasesAndCycle walks the learning rules of
// docs/payloads.md "When the context changes": the first context, made
// from one batch, lacks intervals for h1 and p1 and any cycle; within
// MinRebuild it stays; after it (and 3 batches) a context with every
// interval and phase and the cycle replaces it, once; batches under that
// context write the sensors and ts columns as one byte each; a day later
// the context is refreshed (counter0 and t0 from that batch).
func TestContextEncoderLearnsPhasesAndCycle(t *testing.T) {
	four := newFourSensorGen(t, 8)
	q := newContextSeq(ContextOptions{})
	q.clock = four.now()
	step := func(n int) ([]byte, *CompactContext) {
		t.Helper()
		p, c := q.encode(t, "gw-0001", four.next(t, n))
		q.clock = four.now()
		return p, c
	}
	_, first := step(6)
	if s, _ := first.sensor("p1"); s.interval != 0 || s.hasPhase || first.cycle != nil {
		t.Fatalf("a context from one batch learned p1 %+v and cycle %v", s, first.cycle)
	}
	var learned *CompactContext
	var minutes time.Duration
	for c := first; c == first; minutes = four.now().Sub(first.t0Time()) {
		if minutes > 30*time.Minute {
			t.Fatal("no context learned within 30 minutes")
		}
		_, c = step(6)
		learned = c
	}
	if minutes < DefaultMinRebuild {
		t.Fatalf("a context learned after %v, before MinRebuild", minutes)
	}
	for _, s := range learned.sensors {
		if s.interval != 10000 || !s.hasPhase {
			t.Errorf("learned context: %s every %d ms, phase known %v; want 10000 and a phase", s.name, s.interval, s.hasPhase)
		}
	}
	if len(learned.cycle) != 4 {
		t.Fatalf("learned cycle %v, want the 4 sensors", learned.cycle)
	}
	for i := range 4 * 60 { // an hour of batches, starting at every sensor in turn
		p, c := step(5 + i%3)
		if c != learned {
			t.Fatalf("batch %d after learning made another context", i)
		}
		var arr []any
		if err := cborDec.Unmarshal(p, &arr); err != nil {
			t.Fatalf("%x is not the plain batch: %v", p, err)
		}
		if k, ok := arr[3].(uint64); !ok || k < 4 || k > 7 || arr[4] != uint64(0) {
			t.Fatalf("batch %d: sensors %v, ts %v; want 4 to 7 (the cycle) and 0 (all on time)", i, arr[3], arr[4])
		}
	}
	four.skip(24 * time.Hour)
	q.clock = four.now()
	if _, c := step(6); c == learned || len(c.cycle) != 4 {
		t.Fatal("a day-old context was not refreshed, or lost what it learned")
	}
}

// TestContextEncoderDoesNotChurnOnIrregularTimes: a sensor reporting at
// random times mispredicts every batch, yet learning makes at most a few
// contexts (each try waits twice as long) and then about one a day.
func TestContextEncoderDoesNotChurnOnIrregularTimes(t *testing.T) {
	q := newContextSeq(ContextOptions{})
	rng := rand.New(rand.NewPCG(1, 2))
	contexts := map[uint32]bool{}
	for b := range 3 * 24 * 60 { // three days, a batch a minute
		rs := make([]Reading, 6)
		for i := range rs {
			at := q.clock.Add(time.Duration(rng.IntN(60000)) * time.Millisecond)
			rs[i] = Reading{ID: fmt.Sprintf("c-%d-%d", b, i), Sensor: fmt.Sprintf("door.%d", i%2), TS: at, Value: json.Number(fmt.Sprint(rng.IntN(100)))}
		}
		slices.SortFunc(rs, func(a, b Reading) int { return a.TS.Compare(b.TS) })
		p, c, err := q.enc.Encode("gw-0001", marshalAll(t, rs))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := DecodeCompact(p, func(uint32) (*CompactContext, bool) { return c, true }); err != nil {
			t.Fatal(err)
		}
		contexts[c.ID()] = true
		q.clock = q.clock.Add(time.Minute)
	}
	// 10 min, 20, 40, … up to a day: at most 9 learned, plus a refresh a day.
	if len(contexts) > 1+9+3 {
		t.Fatalf("three days of irregular readings made %d contexts", len(contexts))
	}
	t.Logf("three days of irregular readings: %d contexts", len(contexts))
}

// TestDecodeCompactV2LearnedForms: with a context that gives phases and a
// cycle, a single sensors entry of m + p runs the cycle from p, ts0 counts
// the first sensor's intervals, ids start at the count of ticks since t0;
// entries beyond the cycle and a ts0 out of range are refused with their
// byte offset.
func TestDecodeCompactV2LearnedForms(t *testing.T) {
	const t0 = 1796529600000
	c, err := newCompactContext("gw-1", 0x010203040506, 7, t0, []contextSensor{
		{name: "a", interval: 10000, phase: t0 % 10000, hasPhase: true},
		{name: "b", interval: 10000, phase: (t0 + 37) % 10000, hasPhase: true},
		{name: "door"},
	}, []int{0, 1})
	if err != nil {
		t.Fatal(err)
	}
	lookup := func(id uint32) (*CompactContext, bool) { return c, id == c.ID() }
	id := uint64(c.ID())
	mk := func(v ...any) []byte {
		b, err := cborEnc.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	// Starting at b (position 1) 6 intervals after t0: b a b, all on time.
	got, err := DecodeCompact(mk(2, id, 6, 4, 0, []any{1, 2, 3}, 0), lookup)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		sensor string
		ts     int64
		ctr    uint32
	}{{"b", t0 + 60037, 7 + 13}, {"a", t0 + 70000, 7 + 14}, {"b", t0 + 70037, 7 + 15}}
	for i, w := range want {
		r := got.Readings[i]
		u, _ := decodeULID(r.ID)
		_, _, ctr := idParts(u)
		if r.Sensor != w.sensor || r.TS.UnixMilli() != w.ts || ctr != w.ctr {
			t.Errorf("reading %d: %s at %d, counter %d; want %s at %d, counter %d", i, r.Sensor, r.TS.UnixMilli(), ctr, w.sensor, w.ts, w.ctr)
		}
	}
	for _, tc := range []struct {
		name string
		in   []byte
		want string
	}{
		{"beyond the cycle", mk(2, id, 0, 5, 0, []any{1, 2}, 0), "reading 0: at byte 8 (sensor): 5 is not one of the context's 3 sensors nor 3 + a position in its cycle of 2"},
		{"cycle entry in an array", mk(2, id, 0, []any{3, 4}, 0, []any{1, 2}, 0), "reading 0: at byte 9 (sensor): 3 is not one of the context's 3 sensors"},
		{"ts0 intervals out of range", mk(2, id, int64(1)<<44, 3, 0, []any{1}, 0), "at byte 7 (ts0): 17592186044416 leads out of range"},
		{"ts0 ms out of range", mk(2, id, -t0-1, 2, 0, []any{1}, 0), "at byte 7 (ts0): -1796529600001 leads out of range"},
	} {
		_, err := DecodeCompact(tc.in, lookup)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}

// TestPayloadsDocV2LearnedExampleDecodes holds docs/payloads.md's second
// version 2 example (a learned context: phases and a cycle) to the code:
// the context parses with the id and size the page names, the batch
// decodes with it to the lines the page prints, those readings encode
// again to the same bytes, and the sizes on the page are these.
func TestPayloadsDocV2LearnedExampleDecodes(t *testing.T) {
	const doc = "../../docs/payloads.md"
	block := func(name string) []byte {
		b, err := hex.DecodeString(strings.TrimSpace(testutil.DocBlock(t, doc, name)))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	ctx, err := ParseCompactContext(block("compact2-learned-context-hex"))
	if err != nil {
		t.Fatal(err)
	}
	if len(ctx.cycle) == 0 || !slices.ContainsFunc(ctx.sensors, func(s contextSensor) bool { return s.hasPhase }) {
		t.Fatal("the learned example's context has no cycle or no phase")
	}
	raw := block("compact2-learned-hex")
	b, err := DecodeCompact(raw, func(id uint32) (*CompactContext, bool) { return ctx, id == ctx.ID() })
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	if err := b.WriteJSONLines(&got); err != nil {
		t.Fatal(err)
	}
	if want := testutil.DocBlock(t, doc, "compact2-learned-lines"); got.String() != want {
		t.Fatalf("the learned example decodes to\n%s\nthe page says\n%s", got.String(), want)
	}
	again, err := encodeCompactV2(ctx, false, b.Readings)
	if err != nil || !bytes.Equal(again, raw) {
		t.Fatalf("re-encoding the learned example gives %x, %v", again, err)
	}
	inline, err := encodeCompactV2(ctx, true, b.Readings)
	if err != nil {
		t.Fatal(err)
	}
	page, err := os.ReadFile(doc)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		fmt.Sprintf("%d bytes, id `%s`", len(ctx.raw), ctx.HexID()),
		fmt.Sprintf("six readings referencing it, %d bytes", len(raw)),
		fmt.Sprintf("inline %d bytes", len(inline)),
	} {
		if !strings.Contains(string(page), want) {
			t.Errorf("the page does not say %q", want)
		}
	}
}
