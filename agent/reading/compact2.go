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
	var ts0 int64
	if len(rs) > 0 {
		ts0 = rs[0].TS.UnixMilli()
	}
	e := v2Writer{ctx: ctx, st: newV2State(ctx, ts0), extra: stringTable{index: map[string]uint64{}, list: []string{}}}
	n := len(rs)
	c := compactColumns{sensors: nil, ts: make([]int64, n), values: make([]any, n), ids: make([]any, n),
		units: make([]any, n), tags: make([]any, n)}
	sensors := make([]any, n)
	for i, r := range rs {
		var err error
		if sensors[i], err = e.add(&c, i, r); err != nil {
			return nil, &RecordError{Index: i, Err: err}
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
	arr := []any{uint64(compactV2Version), ctxElem, ts0 - ctx.t0, oneOrAll(sensors), oneOrAll(tsCol), c.values, idsColumn(c.ids)}
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
	return cborEnc.Marshal(arr)
}

func notNil(v any) bool { return v != nil }

// newV2State is the decoding state of a version 2 batch: sensors start
// from the context, ids from its run and counter0 - 1.
func newV2State(ctx *CompactContext, ts0 int64) *compactState {
	st := newCompactState(ts0)
	st.ctx = ctx
	st.prevRun, st.prevCtr, st.haveRun = ctx.run, int64(ctx.counter0)-1, true
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
	lastTS    int64
	seenTS    bool
	intervals []int64 // the last few positive intervals, ms
	unit      string
	tags      map[string]string
	exp       int
}

// contextWindow gathers sensor figures between two contexts.
type contextWindow struct {
	stats   map[string]*sensorStats
	batches int
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
				continue
			}
			s = &sensorStats{first: len(w.stats)}
			w.stats[r.Sensor] = s
		}
		s.readings++
		if s.lastBatch != w.batches {
			s.batches, s.lastBatch = s.batches+1, w.batches
		}
		ts := r.TS.UnixMilli()
		if s.seenTS && ts > s.lastTS {
			s.intervals = append(s.intervals, ts-s.lastTS)
			if len(s.intervals) > 7 {
				s.intervals = s.intervals[1:]
			}
		}
		s.lastTS, s.seenTS = ts, true
		s.unit, s.tags = r.Unit, r.Tags
		if num, ok := r.Value.(json.Number); ok {
			if d, err := parseDecimal(string(num)); err == nil {
				s.exp = d.exp
			}
		}
	}
}

// describe is the context entry of a tracked sensor: its latest unit,
// tags and exponent, and its median interval.
func (s *sensorStats) describe(name string) contextSensor {
	cs := contextSensor{name: name, unit: s.unit, exp: s.exp}
	if len(s.tags) > 0 {
		cs.tags = maps.Clone(s.tags)
	}
	if n := len(s.intervals); n > 0 {
		iv := slices.Clone(s.intervals)
		slices.Sort(iv)
		cs.interval = min(iv[n/2], maxContextInterval)
	}
	return cs
}

// build makes the next context for a batch rs of deviceID. With no current
// context every tracked sensor is in it; otherwise the current sensors
// (updated when seen in keepAfterBatches batches) followed by new sensors
// seen in as many batches, most readings first. Run, counter0 and t0 are
// the batch's first ULID's and first ts, so its first id and ts cost a
// byte each.
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
	}
	if u, ok := firstULID(rs); ok {
		_, run, ctr0 = idParts(u)
	}
	return fitContext(deviceID, run, ctr0, t0, sensors)
}

// fitContext makes the context of the longest prefix of sensors (leaving
// out any single sensor whose description is over maxSensorDescription)
// that stays within MaxContextSensors and MaxContextBytes.
func fitContext(deviceID string, run uint64, ctr0 uint32, t0 int64, sensors []contextSensor) (*CompactContext, error) {
	sensors = slices.DeleteFunc(slices.Clone(sensors), func(s contextSensor) bool {
		n := len(s.name) + len(s.unit)
		for k, v := range s.tags {
			n += len(k) + len(v)
		}
		return n > maxSensorDescription
	})
	sensors = sensors[:min(len(sensors), MaxContextSensors)]
	ctx, err := newCompactContext(deviceID, run, ctr0, t0, sensors)
	if err != nil || len(ctx.raw) <= MaxContextBytes {
		return ctx, err
	}
	// The longest prefix that fits: the size grows with the prefix.
	k := sort.Search(len(sensors), func(k int) bool {
		c, err := newCompactContext(deviceID, run, ctr0, t0, sensors[:k+1])
		return err != nil || len(c.raw) > MaxContextBytes
	})
	return newCompactContext(deviceID, run, ctr0, t0, sensors[:k])
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
