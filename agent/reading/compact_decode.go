package reading

import (
	"errors"
	"fmt"
	"io"
)

// readInflated reads a zlib stream to its end, refusing more than limit
// bytes, and checks its Adler-32.
func readInflated(zr io.ReadCloser, limit int64) ([]byte, error) {
	raw, err := io.ReadAll(io.LimitReader(zr, limit+1))
	if err != nil {
		return nil, fmt.Errorf("inflate: %w", err)
	}
	if int64(len(raw)) > limit {
		return nil, fmt.Errorf("inflates to more than %d bytes", limit)
	}
	if err := zr.Close(); err != nil {
		return nil, fmt.Errorf("inflate: %w", err)
	}
	return raw, nil
}

// MaxCompactArray is the most elements a compact batch's arrays may have
// (the CBOR decoder's own limit): a batch holds at most 10,000 readings.
const MaxCompactArray = 131072

// cborCursor walks a CBOR item by item, so that every error names the byte
// offset of the item it is about.
type cborCursor struct {
	data []byte
	pos  int
}

// errAt wraps err with the offset of the item at pos and what it is.
func errAt(pos int, what string, err error) error {
	return fmt.Errorf("at byte %d (%s): %w", pos, what, err)
}

// arrayHead reads a definite-length array head, or null when nullable. The
// count is bounded by the bytes left, each element taking at least one,
// so a hostile count allocates nothing.
func (c *cborCursor) arrayHead(what string, nullable bool) (n int, null bool, err error) {
	start := c.pos
	if c.pos >= len(c.data) {
		return 0, false, errAt(start, what, io.ErrUnexpectedEOF)
	}
	ib := c.data[c.pos]
	if nullable && ib == 0xf6 {
		c.pos++
		return 0, true, nil
	}
	if ib>>5 != 4 {
		return 0, false, errAt(start, what, fmt.Errorf("initial byte 0x%02x is not an array", ib))
	}
	arg, hl, err := cborArgument(c.data[c.pos:])
	if err != nil {
		return 0, false, errAt(start, what, err)
	}
	c.pos += hl
	if arg > uint64(len(c.data)-c.pos) {
		return 0, false, errAt(start, what, fmt.Errorf("array of %d elements cannot fit in the %d bytes left", arg, len(c.data)-c.pos))
	}
	if arg > MaxCompactArray {
		return 0, false, errAt(start, what, fmt.Errorf("array of %d elements, more than %d", arg, MaxCompactArray))
	}
	return int(arg), false, nil
}

// cborArgument decodes the argument of the head at b[0] (RFC 8949 §3):
// its value and the head's length. Indefinite lengths are refused.
func cborArgument(b []byte) (uint64, int, error) {
	ai := b[0] & 0x1f
	var size int
	switch {
	case ai < 24:
		return uint64(ai), 1, nil
	case ai == 24:
		size = 1
	case ai == 25:
		size = 2
	case ai == 26:
		size = 4
	case ai == 27:
		size = 8
	case ai == 31:
		return 0, 0, errors.New("indefinite length is not allowed")
	default:
		return 0, 0, fmt.Errorf("reserved additional information %d", ai)
	}
	if len(b) < 1+size {
		return 0, 0, io.ErrUnexpectedEOF
	}
	var v uint64
	for _, x := range b[1 : 1+size] {
		v = v<<8 | uint64(x)
	}
	return v, 1 + size, nil
}

// item decodes the next whole item into v.
func (c *cborCursor) item(what string, v any) error {
	start := c.pos
	rest, err := cborDec.UnmarshalFirst(c.data[c.pos:], v)
	if err != nil {
		return errAt(start, what, err)
	}
	c.pos = len(c.data) - len(rest)
	return nil
}

// column reads an array of items with the offset of each; present is
// false for a null column (when nullable). The array is decoded in one
// call; only when that fails is it walked item by item, to name the
// offset of the bad one.
func (c *cborCursor) column(what string, nullable bool) (vals []any, offs []int, present bool, err error) {
	start := c.pos
	n, null, err := c.arrayHead(what, nullable)
	if err != nil || null {
		return nil, nil, false, err
	}
	first := c.pos
	rest, err := cborDec.UnmarshalFirst(c.data[start:], &vals)
	if err != nil {
		for i := range n {
			var v any
			if err := c.item(fmt.Sprintf("%s[%d]", what, i), &v); err != nil {
				return nil, nil, false, err
			}
		}
		return nil, nil, false, errAt(start, what, err)
	}
	c.pos = len(c.data) - len(rest)
	offs = make([]int, n)
	for i, p := 0, first; i < n; i++ {
		offs[i] = p
		if p, err = skipItem(c.data, p); err != nil {
			return nil, nil, false, errAt(p, what, err)
		}
	}
	return vals, offs, true, nil
}

// skipItem returns the offset just past the well-formed item at pos.
func skipItem(data []byte, pos int) (int, error) {
	for pending := 1; pending > 0; pending-- {
		if pos >= len(data) {
			return pos, io.ErrUnexpectedEOF
		}
		major := data[pos] >> 5
		arg, hl, err := cborArgument(data[pos:])
		if err != nil {
			return pos, err
		}
		pos += hl
		switch major {
		case 2, 3:
			if arg > uint64(len(data)-pos) {
				return pos, io.ErrUnexpectedEOF
			}
			pos += int(arg)
		case 4:
			pending += int(min(arg, uint64(len(data))))
		case 5:
			pending += 2 * int(min(arg, uint64(len(data))))
		case 6:
			pending++
		}
	}
	return pos, nil
}

// compactBatch is a compact batch split into its parts, with the offset of
// every column entry.
type compactBatch struct {
	strs                                   []string
	ts0                                    int64
	sensors, ts, values, ids, units, tags  []any
	sensorO, tsO, valueO, idO, unitO, tagO []int
}

// decodeCompact decodes an uncompressed compact batch.
func decodeCompact(data []byte) (Batch, error) {
	var b Batch
	cb, dev, err := splitCompact(data)
	if err != nil {
		return b, err
	}
	b.DeviceID = dev
	st := newCompactState(cb.ts0)
	b.Readings = make([]Reading, 0, len(cb.sensors))
	for i := range cb.sensors {
		r, err := cb.reading(i, st)
		if err != nil {
			return Batch{}, fmt.Errorf("reading %d: %w", i, err)
		}
		b.Readings = append(b.Readings, r)
	}
	return b, nil
}

// splitCompact checks the batch array's shape and reads its parts.
func splitCompact(data []byte) (*compactBatch, string, error) {
	c := &cborCursor{data: data}
	n, _, err := c.arrayHead("batch array", false)
	if err != nil {
		return nil, "", err
	}
	if n != 10 {
		return nil, "", errAt(0, "batch array", fmt.Errorf("%d elements, want 10", n))
	}
	var version any
	if err := c.item("version", &version); err != nil {
		return nil, "", err
	}
	if v, ok := version.(uint64); !ok || v != compactSchemaVersion {
		return nil, "", errAt(1, "version", fmt.Errorf("compact schema version %v, want %d", version, compactSchemaVersion))
	}
	devAt := c.pos
	var devItem any
	if err := c.item("device_id", &devItem); err != nil {
		return nil, "", err
	}
	dev, ok := devItem.(string)
	if !ok {
		return nil, "", errAt(devAt, "device_id", fmt.Errorf("%T, want a text string", devItem))
	}
	if err := checkDeviceID(dev); err != nil {
		return nil, "", errAt(devAt, "device_id", err)
	}
	cb := &compactBatch{}
	if err := cb.readStrings(c); err != nil {
		return nil, "", err
	}
	if err := cb.readColumns(c); err != nil {
		return nil, "", err
	}
	if c.pos != len(data) {
		return nil, "", errAt(c.pos, "after the batch array", fmt.Errorf("%d bytes left over", len(data)-c.pos))
	}
	return cb, dev, nil
}

func (cb *compactBatch) readStrings(c *cborCursor) error {
	list, offs, _, err := c.column("strings", false)
	if err != nil {
		return err
	}
	cb.strs = make([]string, len(list))
	for i, v := range list {
		s, ok := v.(string)
		if !ok {
			return errAt(offs[i], fmt.Sprintf("strings[%d]", i), fmt.Errorf("%T, want a text string", v))
		}
		cb.strs[i] = s
	}
	tsAt := c.pos
	var ts0Item any
	if err := c.item("ts0", &ts0Item); err != nil {
		return err
	}
	ts0, ok := ts0Item.(uint64)
	if !ok || ts0 > maxUnixMilli {
		return errAt(tsAt, "ts0", fmt.Errorf("%v is not an integer from 0 to %d", ts0Item, int64(maxUnixMilli)))
	}
	cb.ts0 = int64(ts0)
	return nil
}

func (cb *compactBatch) readColumns(c *cborCursor) error {
	var err error
	if cb.sensors, cb.sensorO, _, err = c.column("sensors", false); err != nil {
		return err
	}
	n := len(cb.sensors)
	type col struct {
		name     string
		nullable bool
		vals     *[]any
		offs     *[]int
	}
	for _, k := range []col{
		{"ts", false, &cb.ts, &cb.tsO},
		{"values", false, &cb.values, &cb.valueO},
		{"ids", false, &cb.ids, &cb.idO},
		{"units", true, &cb.units, &cb.unitO},
		{"tags", true, &cb.tags, &cb.tagO},
	} {
		at := c.pos
		vals, offs, present, err := c.column(k.name, k.nullable)
		if err != nil {
			return err
		}
		if present && len(vals) != n {
			return errAt(at, k.name, fmt.Errorf("%d entries, want %d as in sensors", len(vals), n))
		}
		*k.vals, *k.offs = vals, offs
	}
	return nil
}

// str resolves a dictionary index.
func (cb *compactBatch) str(v any) (string, error) { return stringRefs{cb.strs}.str(v) }

// reading rebuilds reading i, carrying the delta state in st.
func (cb *compactBatch) reading(i int, st *compactState) (Reading, error) {
	var r Reading
	var err error
	if r.Sensor, err = cb.str(cb.sensors[i]); err != nil {
		return r, errAt(cb.sensorO[i], "sensor", err)
	}
	s := st.sensor(r.Sensor)
	d, err := cborInt("ts", cb.ts[i])
	if err != nil {
		return r, errAt(cb.tsO[i], "ts", err)
	}
	ts, err := s.decodeTS(d)
	if err != nil {
		return r, errAt(cb.tsO[i], "ts", err)
	}
	r.TS = compactTime(ts)
	if r.Value, err = decodeValue(cb.values[i], s); err != nil {
		return r, errAt(cb.valueO[i], "value", err)
	}
	if r.ID, err = st.decodeID(cb.ids[i], ts); err != nil {
		return r, errAt(cb.idO[i], "id", err)
	}
	if cb.units != nil && cb.units[i] != nil {
		if r.Unit, err = cb.str(cb.units[i]); err != nil {
			return r, errAt(cb.unitO[i], "unit", err)
		}
	}
	if cb.tags != nil && cb.tags[i] != nil {
		if r.Tags, err = cb.tagMap(cb.tags[i]); err != nil {
			return r, errAt(cb.tagO[i], "tags", err)
		}
	}
	if err := r.Validate(); err != nil {
		var pe *ParseError
		if errors.As(err, &pe) {
			err = fmt.Errorf("field %q: %s", pe.Field, pe.Problem)
		}
		return r, errAt(cb.sensorO[i], "reading", err)
	}
	return r, nil
}

func (cb *compactBatch) tagMap(v any) (map[string]string, error) {
	return stringRefs{cb.strs}.tagMap(v)
}
