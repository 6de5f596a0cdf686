package reading

import (
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"sort"
)

// compactV2Version is the first element of every compact version 2 batch.
const compactV2Version = 2

// encodeCompactV2 builds the uncompressed version 2 batch array
// (docs/payloads.md, "compact version 2"):
//
//	[2, context id / context, ts0, sensors, ts, values, ids, ? strings, ? units, ? tags]
//
// The context must describe deviceID's readings; inline puts it in the
// batch whole instead of its id.
func encodeCompactV2(ctx *CompactContext, inline bool, rs []Reading) ([]byte, error) {
	raw, _, err := encodeCompactV2Fit(ctx, inline, rs)
	return raw, err
}

// v2Fit is how well a context predicted a batch: mispredicted counts the
// readings of context sensors whose ts entry took more than one byte (or
// that have no interval or phase in it), offCycle whether the sensors
// column had to be an array though every reading was of a context sensor;
// predBytes is what the sensors and ts columns took.
type v2Fit struct {
	mispredicted int
	offCycle     bool
	predBytes    int
}

// encodeCompactV2Fit is encodeCompactV2 that also says how well the
// context predicted the batch.
func encodeCompactV2Fit(ctx *CompactContext, inline bool, rs []Reading) ([]byte, v2Fit, error) {
	var fit v2Fit
	ts0 := batchBase(ctx, rs)
	e := v2Writer{ctx: ctx, st: newV2State(ctx, ts0), extra: stringTable{index: map[string]uint64{}, list: []string{}}}
	n := len(rs)
	c := compactColumns{sensors: nil, ts: make([]int64, n), values: make([]any, n), ids: make([]any, n),
		units: make([]any, n), tags: make([]any, n)}
	sensors := make([]any, n)
	for i, r := range rs {
		var err error
		if sensors[i], err = e.add(&c, i, r); err != nil {
			return nil, fit, &RecordError{Index: i, Err: err}
		}
		if cs, ok := ctx.sensor(r.Sensor); ok && (!cs.hasPhase || c.ts[i] < -24 || c.ts[i] > 23) {
			fit.mispredicted++
		}
	}
	var ctxElem any = uint64(ctx.id)
	if inline {
		ctxElem = rawContext(ctx)
	}
	tsCol := make([]any, n)
	for i, d := range c.ts {
		tsCol[i] = d
	}
	sensorsCol, tsOne := sensorsColumn(ctx, sensors), oneOrAll(tsCol)
	_, fit.offCycle = sensorsCol.([]any)
	fit.offCycle = fit.offCycle && !slices.ContainsFunc(sensors, func(v any) bool { _, named := v.(int64); return named })
	fit.predBytes = cborLen(sensorsCol) + cborLen(tsOne)
	arr := []any{uint64(compactV2Version), ctxElem, ts0Element(ctx, rs, ts0), sensorsCol, tsOne, c.values, idsColumn(c.ids)}
	var units, tags any
	if slices.ContainsFunc(c.units, notNil) {
		units = oneOrAll(c.units)
	}
	if slices.ContainsFunc(c.tags, notNil) {
		tags = oneOrAll(c.tags)
	}
	switch {
	case tags != nil:
		arr = append(arr, e.extra.list, units, tags)
	case units != nil:
		arr = append(arr, e.extra.list, units)
	case len(e.extra.list) > 0:
		arr = append(arr, e.extra.list)
	}
	raw, err := cborEnc.Marshal(arr)
	return raw, fit, err
}

// cborLen is the size of v's encoding.
func cborLen(v any) int {
	b, _ := cborEnc.Marshal(v)
	return len(b)
}

// batchBase is the batch's base time: its first reading's ts, or when the
// context gives that reading's sensor a phase, the sensor's tick nearest
// it, so that every sensor's first reading is predicted from its phase.
func batchBase(ctx *CompactContext, rs []Reading) int64 {
	if len(rs) == 0 {
		return 0
	}
	ts := rs[0].TS.UnixMilli()
	cs, ok := ctx.sensor(rs[0].Sensor)
	if !ok || !cs.hasPhase || cs.interval == 0 {
		return ts
	}
	return tickNear(ts, cs)
}

// tickNear is the sensor's tick nearest ts (the earlier on a tie), within
// 0 and maxUnixMilli.
func tickNear(ts int64, cs contextSensor) int64 {
	tick := ts - floorMod(ts-cs.phase, cs.interval)
	if ts-tick > cs.interval/2 {
		tick += cs.interval
	}
	if tick > maxUnixMilli {
		tick -= cs.interval
	}
	if tick < 0 {
		tick += cs.interval
	}
	return tick
}

// ts0Element is the batch's ts0: with a first reading of a sensor the
// context gives a phase, base is that sensor's tick and ts0 the number of
// its intervals from its first tick at or after t0; else base - t0 in ms.
func ts0Element(ctx *CompactContext, rs []Reading, base int64) int64 {
	if len(rs) > 0 {
		if cs, ok := ctx.sensor(rs[0].Sensor); ok && cs.hasPhase {
			return (base - firstTick(ctx.t0, cs)) / cs.interval
		}
	}
	return base - ctx.t0
}

// firstTick is the sensor's first tick at or after t.
func firstTick(t int64, cs contextSensor) int64 {
	return t + floorMod(cs.phase-t, cs.interval)
}

// expectedIDs is how many ids the context's sensors with a phase made
// from t0 up to base, one per tick (negative before t0), within ±2^32:
// what the agent's id counter has moved since counter0 when every reading
// came on time.
func expectedIDs(ctx *CompactContext, base int64) int64 {
	var n int64
	for _, cs := range ctx.sensors {
		if cs.hasPhase {
			n += floorDiv(base-1-cs.phase, cs.interval) - floorDiv(ctx.t0-1-cs.phase, cs.interval)
		}
	}
	return max(-1<<32, min(n, 1<<32))
}

// floorDiv is a / m rounded down, for m > 0.
func floorDiv(a, m int64) int64 {
	return (a - floorMod(a, m)) / m
}

// sensorsColumn writes the sensors column: one entry when every reading
// is of one sensor; m + p, for a context of m sensors, when the readings
// follow the context's cycle from its position p; else the array.
func sensorsColumn(ctx *CompactContext, sensors []any) any {
	one := oneOrAll(sensors)
	if _, all := one.([]any); !all || len(ctx.cycle) == 0 {
		return one
	}
	first, ok := sensors[0].(uint64)
	p := slices.Index(ctx.cycle, int(first))
	if !ok || p < 0 {
		return one
	}
	for i, v := range sensors {
		if k, ok := v.(uint64); !ok || int(k) != ctx.cycle[(p+i)%len(ctx.cycle)] {
			return one
		}
	}
	return uint64(len(ctx.sensors) + p)
}

func notNil(v any) bool { return v != nil }

// newV2State is the decoding state of a version 2 batch: sensors start
// from the context, ids from its run and counter0 - 1 + the ids its
// sensors with a phase made from t0 to ts0.
func newV2State(ctx *CompactContext, ts0 int64) *compactState {
	st := newCompactState(ts0)
	st.ctx = ctx
	st.prevRun, st.prevCtr, st.haveRun = ctx.run, int64(ctx.counter0)-1+expectedIDs(ctx, ts0), true
	return st
}

// v2Writer is the encoder's state for one version 2 batch.
type v2Writer struct {
	ctx   *CompactContext
	st    *compactState
	extra stringTable // strings not in the context, numbered after its strings
}

// ref is the index of s in the context's strings followed by the batch's.
func (e *v2Writer) ref(s string) uint64 {
	if i, ok := e.ctx.strIndex[s]; ok {
		return i
	}
	return uint64(len(e.ctx.strs)) + e.extra.ref(s)
}

// add puts reading i into the columns and returns its sensors entry: the
// context's sensor number, or -1 - the string index of its name.
func (e *v2Writer) add(c *compactColumns, i int, r Reading) (any, error) {
	s := e.st.sensor(r.Sensor)
	ts := r.TS.UnixMilli()
	c.ts[i] = ts - s.predictTS()
	s.advanceTS(ts)
	v, err := compactValue(r.Value, s)
	if err != nil {
		return nil, err
	}
	c.values[i] = v
	c.ids[i] = e.st.encodeID(r.ID, ts)
	switch {
	case r.Unit == s.unit:
	case r.Unit == "":
		c.units[i] = false
	default:
		c.units[i] = e.ref(r.Unit)
	}
	switch {
	case maps.Equal(r.Tags, s.tags):
	case len(r.Tags) == 0:
		c.tags[i] = false
	default:
		m := make(map[uint64]uint64, len(r.Tags))
		for _, k := range sortedKeys(r.Tags) {
			m[e.ref(k)] = e.ref(r.Tags[k])
		}
		c.tags[i] = m
	}
	if k, ok := e.ctx.byName[r.Sensor]; ok {
		return uint64(k), nil
	}
	return -1 - int64(e.ref(r.Sensor)), nil
}

// oneOrAll writes a column whose entries are all equal as that entry.
func oneOrAll(col []any) any {
	if len(col) == 0 {
		return col
	}
	for _, v := range col[1:] {
		if !reflect.DeepEqual(v, col[0]) {
			return col
		}
	}
	return col[0]
}

// idsColumn writes [s, 0, 0, …] (consecutive ULIDs of the run, times the
// readings' ts) as the integer s.
func idsColumn(ids []any) any {
	if len(ids) == 0 {
		return ids
	}
	if _, ok := ids[0].(int64); !ok {
		return ids
	}
	for _, v := range ids[1:] {
		if d, ok := v.(int64); !ok || d != 0 {
			return ids
		}
	}
	return ids[0]
}

// How a ContextEncoder decides on a new context (docs/payloads.md, "When
// the context changes").
const (
	// rebuildAfterMisfits is how many batches since the last context must
	// have held a reading the context does not describe.
	rebuildAfterMisfits = 3
	// keepAfterBatches is in how many batches since the last context a
	// sensor (with its latest unit and tags) must have appeared to enter
	// the next context.
	keepAfterBatches = 3
	// maxTrackedSensors bounds the sensors a ContextEncoder keeps figures
	// on between two contexts; others are encoded but not counted.
	maxTrackedSensors = 1024
	// maxSensorDescription is the most string bytes (name, unit, tags) a
	// sensor may need to be described in a context.
	maxSensorDescription = 1024
)

// sensorStats are what a context window knows of a sensor.
type sensorStats struct {
	first     int // order of first appearance
	readings  int
	batches   int
	lastBatch int
	firstTS   int64
	lastTS    int64
	seenTS    bool
	intervals []int64 // the last few positive intervals, ms
	recentTS  []int64 // the last few ts, for the phase
	unit      string
	tags      map[string]string
	exp       int
}

// recentLimit bounds the figures kept per sensor (intervals, ts) and the
// sensor order kept for the cycle.
const (
	recentLimit    = 7
	recentSequence = 64
	maxCycle       = 32
)

// contextWindow gathers sensor figures between two contexts.
type contextWindow struct {
	stats   map[string]*sensorStats
	batches int
	order   []string // the sensors of the latest readings, at most recentSequence
}

func newContextWindow() *contextWindow {
	return &contextWindow{stats: map[string]*sensorStats{}}
}

// observe counts a batch's readings, tracking at most maxTrackedSensors
// sensors.
func (w *contextWindow) observe(rs []Reading) {
	w.batches++
	for _, r := range rs {
		s := w.stats[r.Sensor]
		if s == nil {
			if len(w.stats) >= maxTrackedSensors {
				w.order = w.order[:0] // an untracked sensor breaks any cycle
				continue
			}
			s = &sensorStats{first: len(w.stats)}
			w.stats[r.Sensor] = s
		}
		w.order = appendBounded(w.order, r.Sensor, recentSequence)
		s.readings++
		if s.lastBatch != w.batches {
			s.batches, s.lastBatch = s.batches+1, w.batches
		}
		s.observeTS(r.TS.UnixMilli())
		s.unit, s.tags = r.Unit, r.Tags
		if num, ok := r.Value.(json.Number); ok {
			if d, err := parseDecimal(string(num)); err == nil {
				s.exp = d.exp
			}
		}
	}
}

func (s *sensorStats) observeTS(ts int64) {
	if !s.seenTS {
		s.firstTS = ts
	}
	if s.seenTS && ts > s.lastTS {
		s.intervals = appendBounded(s.intervals, ts-s.lastTS, recentLimit)
	}
	s.lastTS, s.seenTS = ts, true
	s.recentTS = appendBounded(s.recentTS, ts, recentLimit+1)
}

// appendBounded appends v, dropping the oldest entries beyond limit.
func appendBounded[T any](list []T, v T, limit int) []T {
	list = append(list, v)
	if len(list) > limit {
		list = append(list[:0], list[len(list)-limit:]...)
	}
	return list
}

// describe is the context entry of a tracked sensor: its latest unit,
// tags and exponent, its interval and the phase of its ts.
func (s *sensorStats) describe(name string) contextSensor {
	cs := contextSensor{name: name, unit: s.unit, exp: s.exp}
	if len(s.tags) > 0 {
		cs.tags = maps.Clone(s.tags)
	}
	cs.interval = s.interval()
	if cs.interval > 0 && len(s.recentTS) >= 2 {
		cs.phase, cs.hasPhase = s.phase(cs.interval), true
	}
	return cs
}

// interval is the median of the last intervals, refined over the whole
// window (first to last ts over the number of intervals the median puts
// in it) when that agrees within 2 %, then rounded to the roundest number
// of ms (a multiple of 1000, 100 or 10) within the jitter seen over that
// span, so that the phase does not drift.
func (s *sensorStats) interval() int64 {
	n := len(s.intervals)
	if n == 0 {
		return 0
	}
	iv := slices.Clone(s.intervals)
	slices.Sort(iv)
	med := iv[n/2]
	k := int64(1)
	if span := s.lastTS - s.firstTS; span > 0 {
		if k = max(1, (span+med/2)/med); true {
			if r := (span + k/2) / k; r > 0 && abs64(r-med) <= med/50 {
				med = r
			} else {
				k = 1
			}
		}
	}
	tol := (iv[n-1]-iv[0])/k + 1
	for _, unit := range []int64{1000, 100, 10} {
		if r := (med + unit/2) / unit * unit; r > 0 && abs64(r-med) <= tol {
			med = r
			break
		}
	}
	return min(med, maxContextInterval)
}

// phase is the median ts modulo iv of the last readings, taken around the
// latest one so that values either side of 0 do not average apart.
func (s *sensorStats) phase(iv int64) int64 {
	ref := s.recentTS[len(s.recentTS)-1]
	dev := make([]int64, len(s.recentTS))
	for i, ts := range s.recentTS {
		dev[i] = floorMod(ts-ref+iv/2, iv) - iv/2
	}
	slices.Sort(dev)
	return floorMod(ref+dev[len(dev)/2], iv)
}

func abs64(v int64) int64 {
	if v < 0 {
		return -v
	}
	return v
}

// cycle is the shortest order (2 to maxCycle distinct sensors) the latest
// readings repeat, seen at least twice over, or nil.
func (w *contextWindow) cycle() []string {
	seq := w.order
	for l := 2; l <= maxCycle && 2*l <= len(seq); l++ {
		if distinct(seq[:l]) && repeats(seq, l) {
			return slices.Clone(seq[:l])
		}
	}
	return nil
}

func distinct(names []string) bool {
	seen := make(map[string]bool, len(names))
	for _, n := range names {
		if seen[n] {
			return false
		}
		seen[n] = true
	}
	return true
}

func repeats(seq []string, l int) bool {
	for i := l; i < len(seq); i++ {
		if seq[i] != seq[i-l] {
			return false
		}
	}
	return true
}

// build makes the next context for a batch rs of deviceID. With no current
// context every tracked sensor is in it; otherwise the current sensors
// (updated when seen in keepAfterBatches batches) followed by new sensors
// seen in as many batches, most readings first, and the order they report
// in when they keep to one. Run, counter0 and t0 are the batch's first
// ULID's and first ts, so its first id and ts cost a byte each.
func (w *contextWindow) build(deviceID string, rs []Reading, cur *CompactContext) (*CompactContext, error) {
	var sensors []contextSensor
	inCur := map[string]bool{}
	if cur != nil {
		for _, cs := range cur.sensors {
			inCur[cs.name] = true
			if s := w.stats[cs.name]; s != nil && s.batches >= keepAfterBatches {
				cs = s.describe(cs.name)
			}
			sensors = append(sensors, cs)
		}
	}
	names := make([]string, 0, len(w.stats))
	for name, s := range w.stats {
		if !inCur[name] && (cur == nil || s.batches >= keepAfterBatches) {
			names = append(names, name)
		}
	}
	sort.Slice(names, func(i, j int) bool {
		a, b := w.stats[names[i]], w.stats[names[j]]
		if a.readings != b.readings {
			return a.readings > b.readings
		}
		return a.first < b.first
	})
	for _, name := range names {
		sensors = append(sensors, w.stats[name].describe(name))
	}
	var run uint64
	var ctr0 uint32
	var t0 int64
	if len(rs) > 0 {
		t0 = rs[0].TS.UnixMilli()
		// t0 on the first sensor's tick, as the batch's base time will be.
		if k := slices.IndexFunc(sensors, func(s contextSensor) bool { return s.name == rs[0].Sensor }); k >= 0 && sensors[k].hasPhase {
			t0 = tickNear(t0, sensors[k])
		}
	}
	if u, ok := firstULID(rs); ok {
		_, run, ctr0 = idParts(u)
	} else if cur != nil {
		// No agent id to start from: carry on the current run.
		run, ctr0 = cur.run, cur.counter0
	}
	return fitContext(deviceID, run, ctr0, t0, sensors, w.cycle())
}

// fitContext makes the context of the longest prefix of sensors (leaving
// out any single sensor whose description is over maxSensorDescription)
// that stays within MaxContextSensors and MaxContextBytes, with the cycle
// of names when every one of them is in it.
func fitContext(deviceID string, run uint64, ctr0 uint32, t0 int64, sensors []contextSensor, cycleNames []string) (*CompactContext, error) {
	sensors = slices.DeleteFunc(slices.Clone(sensors), func(s contextSensor) bool {
		n := len(s.name) + len(s.unit)
		for k, v := range s.tags {
			n += len(k) + len(v)
		}
		return n > maxSensorDescription
	})
	sensors = sensors[:min(len(sensors), MaxContextSensors)]
	mk := func(sensors []contextSensor) (*CompactContext, error) {
		return newCompactContext(deviceID, run, ctr0, t0, sensors, cycleOf(sensors, cycleNames))
	}
	ctx, err := mk(sensors)
	if err != nil || len(ctx.raw) <= MaxContextBytes {
		return ctx, err
	}
	// The longest prefix that fits: the size grows with the prefix.
	k := sort.Search(len(sensors), func(k int) bool {
		c, err := mk(sensors[:k+1])
		return err != nil || len(c.raw) > MaxContextBytes
	})
	return mk(sensors[:k])
}

// cycleOf numbers the cycle's names by their place in sensors; nil when
// one is missing.
func cycleOf(sensors []contextSensor, names []string) []int {
	out := make([]int, 0, len(names))
	for _, name := range names {
		k := slices.IndexFunc(sensors, func(s contextSensor) bool { return s.name == name })
		if k < 0 {
			return nil
		}
		out = append(out, k)
	}
	if len(out) < 2 {
		return nil
	}
	return out
}

// misfits reports whether the context fails to describe some reading of
// rs: a sensor not in it, or with another unit or tags.
func misfits(ctx *CompactContext, rs []Reading) bool {
	for _, r := range rs {
		cs, ok := ctx.sensor(r.Sensor)
		if !ok || cs.unit != r.Unit || !maps.Equal(cs.tags, r.Tags) {
			return true
		}
	}
	return false
}

// runWrapped reports whether the batch's first ULID is of the run after
// the context's: the id counter wrapped, so every id would cost 16 bytes.
func runWrapped(ctx *CompactContext, rs []Reading) bool {
	u, ok := firstULID(rs)
	if !ok {
		return false
	}
	_, run, _ := idParts(u)
	return run == (ctx.run+1)&(1<<48-1)
}

// firstULID is the first id of rs that is a ULID.
func firstULID(rs []Reading) ([16]byte, bool) {
	for _, r := range rs {
		if u, ok := decodeULID(r.ID); ok {
			return u, true
		}
	}
	return [16]byte{}, false
}

// fmtContextID is how errors name a context.
func fmtContextID(id uint32) string { return fmt.Sprintf("%08x", id) }
