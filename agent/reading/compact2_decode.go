package reading

import (
	"errors"
	"fmt"
	"maps"
	"slices"
)

// DecodeCompact decodes a compact payload of any form: version 1, version 2
// with its context inline, and version 2 referencing a context by id, which
// contexts (may be nil) looks up; a context it does not know is an error
// naming the id in 8 hex digits. Like the other decoders it refuses,
// naming the byte offset (in the inflated batch for a compressed payload),
// anything off the schema, and payloads that inflate beyond 256 times their
// size plus 1 MiB.
func DecodeCompact(payload []byte, contexts func(id uint32) (*CompactContext, bool)) (Batch, error) {
	b, err := decodeCompactPayload(payload, contexts)
	if err != nil {
		return Batch{}, fmt.Errorf("reading: decode compact batch: %w", err)
	}
	return b, nil
}

// v2Column is a column of a version 2 batch: an array, or one entry
// standing for every reading's (firstOnly: for the first reading, every
// other one's being 0).
type v2Column struct {
	vals      []any
	offs      []int
	one       any
	oneAt     int
	single    bool
	firstOnly bool
	present   bool
}

func (col *v2Column) at(i int) (any, int) {
	switch {
	case !col.single:
		return col.vals[i], col.offs[i]
	case col.firstOnly && i > 0:
		return uint64(0), col.oneAt
	}
	return col.one, col.oneAt
}

// columnOrOne reads an array column, or a single entry that is not an
// array; with nullable, a null single entry means the column is absent.
func (c *cborCursor) columnOrOne(what string, nullable bool) (v2Column, error) {
	var col v2Column
	if c.pos < len(c.data) && c.data[c.pos]>>5 == 4 {
		vals, offs, _, err := c.column(what, false)
		col.vals, col.offs, col.present = vals, offs, true
		return col, err
	}
	col.oneAt, col.single = c.pos, true
	if err := c.item(what, &col.one); err != nil {
		return col, err
	}
	col.present = !nullable || col.one != nil
	return col, nil
}

// v2Batch is a version 2 batch split into its parts.
type v2Batch struct {
	ctx                                   *CompactContext
	ts0                                   int64
	strs                                  []string // the context's, then the batch's
	n                                     int
	sensors, ts, values, ids, units, tags v2Column
}

// decodeCompactV2 decodes an uncompressed version 2 batch.
func decodeCompactV2(data []byte, contexts func(uint32) (*CompactContext, bool)) (Batch, error) {
	b, err := splitCompactV2(data, contexts)
	if err != nil {
		return Batch{}, err
	}
	st := newV2State(b.ctx, b.ts0)
	out := Batch{DeviceID: b.ctx.deviceID, Readings: make([]Reading, 0, b.n)}
	for i := range b.n {
		r, err := b.reading(i, st)
		if err != nil {
			return Batch{}, fmt.Errorf("reading %d: %w", i, err)
		}
		out.Readings = append(out.Readings, r)
	}
	return out, nil
}

// splitCompactV2 checks the batch array's shape and reads its parts.
func splitCompactV2(data []byte, contexts func(uint32) (*CompactContext, bool)) (*v2Batch, error) {
	c := &cborCursor{data: data}
	n, _, err := c.arrayHead("batch array", false)
	if err != nil {
		return nil, err
	}
	if n < 7 || n > 10 {
		return nil, errAt(0, "batch array", fmt.Errorf("%d elements, want 7 to 10", n))
	}
	if _, err := c.uintItem("version", compactV2Version); err != nil {
		return nil, err
	}
	b := &v2Batch{}
	if b.ctx, err = batchContext(c, contexts); err != nil {
		return nil, err
	}
	ts0At, ts0, err := readTS0(c)
	if err != nil {
		return nil, err
	}
	if err := b.readColumns(c); err != nil {
		return nil, err
	}
	if err := b.setBase(ts0At, ts0); err != nil {
		return nil, err
	}
	b.strs = b.ctx.strs
	if n > 7 {
		extra, err := readStringArray(c, "strings")
		if err != nil {
			return nil, err
		}
		b.strs = slices.Concat(b.ctx.strs, extra)
	}
	if n > 8 {
		if b.units, err = c.columnOrOne("units", true); err != nil {
			return nil, err
		}
	}
	if n > 9 {
		if b.tags, err = c.columnOrOne("tags", true); err != nil {
			return nil, err
		}
	}
	for _, col := range []namedColumn{{"units", b.units}, {"tags", b.tags}} {
		if col.present && !col.single && len(col.vals) != b.n {
			return nil, errAt(col.offs0(), col.name, fmt.Errorf("%d entries, want %d as in values", len(col.vals), b.n))
		}
	}
	if c.pos != len(data) {
		return nil, errAt(c.pos, "after the batch array", fmt.Errorf("%d bytes left over", len(data)-c.pos))
	}
	return b, nil
}

type namedColumn struct {
	name string
	v2Column
}

// offs0 is where an array column's first entry is (its head is just
// before), for errors about the whole column.
func (col v2Column) offs0() int {
	if len(col.offs) > 0 {
		return col.offs[0]
	}
	return col.oneAt
}

// batchContext reads the context element: the context inline, or its id.
func batchContext(c *cborCursor, contexts func(uint32) (*CompactContext, bool)) (*CompactContext, error) {
	at := c.pos
	if at < len(c.data) && c.data[at]>>5 == 4 {
		end, err := skipItem(c.data, at)
		if err != nil {
			return nil, errAt(at, "context", err)
		}
		ctx, err := parseContextAt(c.data, at, end)
		if err != nil {
			return nil, err
		}
		c.pos = end
		return ctx, nil
	}
	id, err := c.uintItem("context id", 1<<32-1)
	if err != nil {
		return nil, err
	}
	var ctx *CompactContext
	ok := false
	if contexts != nil {
		ctx, ok = contexts(uint32(id))
	}
	if !ok || ctx == nil {
		return nil, errAt(at, "context", fmt.Errorf("context %s is not known", fmtContextID(uint32(id))))
	}
	if ctx.id != uint32(id) {
		return nil, errAt(at, "context", fmt.Errorf("asked for context %s, got %s", fmtContextID(uint32(id)), fmtContextID(ctx.id)))
	}
	return ctx, nil
}

func readTS0(c *cborCursor) (int, int64, error) {
	at := c.pos
	var v any
	if err := c.item("ts0", &v); err != nil {
		return at, 0, err
	}
	d, err := cborInt("ts0", v)
	if err != nil {
		return at, 0, errAt(at, "ts0", err)
	}
	return at, d, nil
}

// setBase sets the base time from ts0 (at byte at): a count of intervals
// from the first reading's sensor's first tick at or after t0 when the
// context gives that sensor a phase, else ms from t0.
func (b *v2Batch) setBase(at int, d int64) error {
	from, unit := b.ctx.t0, int64(1)
	if b.n > 0 {
		sv, _ := b.sensors.at(0)
		if name, err := b.sensorName(sv, 0); err == nil {
			if cs, ok := b.ctx.sensor(name); ok && cs.hasPhase {
				from, unit = firstTick(b.ctx.t0, cs), cs.interval
			}
		}
	}
	if d < -maxUnixMilli/unit-1 || d > maxUnixMilli/unit+1 || from+d*unit < 0 || from+d*unit > maxUnixMilli {
		return errAt(at, "ts0", fmt.Errorf("%d leads out of range from t0 %d", d, b.ctx.t0))
	}
	b.ts0 = from + d*unit
	return nil
}

// readColumns reads sensors, ts, values and ids; values is always an
// array and gives the number of readings.
func (b *v2Batch) readColumns(c *cborCursor) error {
	var err error
	if b.sensors, err = c.columnOrOne("sensors", false); err != nil {
		return err
	}
	if b.ts, err = c.columnOrOne("ts", false); err != nil {
		return err
	}
	at := c.pos
	if c.pos < len(c.data) && c.data[c.pos]>>5 != 4 {
		return errAt(at, "values", fmt.Errorf("initial byte 0x%02x is not an array", c.data[c.pos]))
	}
	if b.values, err = c.columnOrOne("values", false); err != nil {
		return err
	}
	b.n = len(b.values.vals)
	if b.ids, err = c.columnOrOne("ids", false); err != nil {
		return err
	}
	if b.ids.single {
		if _, err := cborInt("id counter skip", b.ids.one); err != nil {
			return errAt(b.ids.oneAt, "ids", fmt.Errorf("a single ids entry must be an integer: %w", err))
		}
		b.ids.firstOnly = true
	}
	for _, col := range []namedColumn{{"sensors", b.sensors}, {"ts", b.ts}, {"ids", b.ids}} {
		if !col.single && len(col.vals) != b.n {
			return errAt(col.offs0(), col.name, fmt.Errorf("%d entries, want %d as in values", len(col.vals), b.n))
		}
	}
	return nil
}

// sensorName resolves reading i's sensors entry: a context sensor's
// number, -1 - the string index of a name, or (a single entry) the
// context's sensor count m + p: the cycle from its position p.
func (b *v2Batch) sensorName(v any, i int) (string, error) {
	m := uint64(len(b.ctx.sensors))
	switch k := v.(type) {
	case uint64:
		if k < m {
			return b.ctx.sensors[k].name, nil
		}
		if L := uint64(len(b.ctx.cycle)); b.sensors.single && k-m < L {
			return b.ctx.sensors[b.ctx.cycle[(k-m+uint64(i))%L]].name, nil
		}
		if b.sensors.single {
			return "", fmt.Errorf("%d is not one of the context's %d sensors nor %d + a position in its cycle of %d", k, m, m, len(b.ctx.cycle))
		}
		return "", fmt.Errorf("%d is not one of the context's %d sensors", k, m)
	case int64:
		return stringRefs{b.strs}.str(uint64(-1 - k))
	}
	return "", fmt.Errorf("%v (%T) is not a sensor reference", v, v)
}

// reading rebuilds reading i, carrying the delta state in st.
func (b *v2Batch) reading(i int, st *compactState) (Reading, error) {
	var r Reading
	sv, sAt := b.sensors.at(i)
	var err error
	if r.Sensor, err = b.sensorName(sv, i); err != nil {
		return r, errAt(sAt, "sensor", err)
	}
	s := st.sensor(r.Sensor)
	tv, tAt := b.ts.at(i)
	d, err := cborInt("ts", tv)
	if err != nil {
		return r, errAt(tAt, "ts", err)
	}
	ts, err := s.decodeTS(d)
	if err != nil {
		return r, errAt(tAt, "ts", err)
	}
	r.TS = compactTime(ts)
	vv, vAt := b.values.at(i)
	if r.Value, err = decodeValue(vv, s); err != nil {
		return r, errAt(vAt, "value", err)
	}
	iv, iAt := b.ids.at(i)
	if r.ID, err = st.decodeID(iv, ts); err != nil {
		return r, errAt(iAt, "id", err)
	}
	if err := b.unitAndTags(i, s, &r); err != nil {
		return r, err
	}
	if err := r.Validate(); err != nil {
		var pe *ParseError
		if errors.As(err, &pe) {
			err = fmt.Errorf("field %q: %s", pe.Field, pe.Problem)
		}
		return r, errAt(sAt, "reading", err)
	}
	return r, nil
}

// unitAndTags applies the units and tags entries: null (or no column) is
// the sensor's from the context, false none, else string indices.
func (b *v2Batch) unitAndTags(i int, s *sensorState, r *Reading) error {
	refs := stringRefs{b.strs}
	r.Unit = s.unit
	if b.units.present {
		v, at := b.units.at(i)
		switch {
		case v == nil:
		case v == false:
			r.Unit = ""
		default:
			u, err := refs.str(v)
			if err != nil {
				return errAt(at, "unit", err)
			}
			r.Unit = u
		}
	}
	if len(s.tags) > 0 {
		r.Tags = maps.Clone(s.tags)
	}
	if b.tags.present {
		v, at := b.tags.at(i)
		switch {
		case v == nil:
		case v == false:
			r.Tags = nil
		default:
			t, err := refs.tagMap(v)
			if err != nil {
				return errAt(at, "tags", err)
			}
			r.Tags = t
		}
	}
	return nil
}
