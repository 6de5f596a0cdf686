package reading

import (
	"bytes"
	"compress/zlib"
	_ "embed"
	"encoding/json"
	"fmt"
	"hash/adler32"
	"io"
	"math/big"
	"sync"
	"time"

	"github.com/fxamacker/cbor/v2"
)

// EncodingCompact is the schema-aware batch encoding for cellular links:
// columns, per-batch string dictionary, per-sensor delta-of-delta
// timestamps, per-sensor value deltas, agent ids as counter deltas, and
// deflate with a preset dictionary when that is shorter. docs/payloads.md and
// docs/payloads.cddl are its specification.
const EncodingCompact = "compact"

// ContentTypeCompact is the media type of compact payloads. The payload
// carries its own compression (see docs/payloads.md), so it has no content
// encoding.
const ContentTypeCompact = "application/vnd.cellgate.compact+cbor"

// compactSchemaVersion is the first element of every compact version 1
// batch; version 2 (compact2.go) has compactV2Version.
const compactSchemaVersion = 1

// compactDictV1 is the preset deflate dictionary of compact version 1,
// published as agent/reading/compact-dict-v1.bin; its Adler-32 is the
// DICTID of every compressed compact payload.
//
//go:embed compact-dict-v1.bin
var compactDictV1 []byte

// CompactDictID is the zlib DICTID (RFC 1950) of the compact version 1
// preset dictionary, compact-dict-v1.bin.
var CompactDictID = adler32.Checksum(compactDictV1)

// compactEncoder implements EncodingCompact.
type compactEncoder struct{}

func (compactEncoder) Name() string            { return EncodingCompact }
func (compactEncoder) ContentType() string     { return ContentTypeCompact }
func (compactEncoder) ContentEncoding() string { return "" }

// compactZlibWriters recycles compressors primed with the dictionary.
var compactZlibWriters sync.Pool

// Encode builds a compact version 2 batch that carries its context inline,
// made from this batch alone, so the payload decodes on its own; it returns
// it either as it is or zlib-compressed with the preset dictionary,
// whichever is shorter. A ContextEncoder makes shorter payloads that
// reference a context published once.
func (compactEncoder) Encode(deviceID string, records [][]byte) ([]byte, error) {
	if err := checkDeviceID(deviceID); err != nil {
		return nil, fmt.Errorf("reading: encode compact batch: %w", err)
	}
	rs, err := unmarshalRecords(records)
	if err != nil {
		return nil, fmt.Errorf("reading: encode compact batch: %w", err)
	}
	w := newContextWindow()
	w.observe(rs)
	ctx, err := w.build(deviceID, rs, nil)
	if err != nil {
		return nil, fmt.Errorf("reading: encode compact batch: %w", err)
	}
	raw, err := encodeCompactV2(ctx, true, rs)
	if err != nil {
		return nil, fmt.Errorf("reading: encode compact batch: %w", err)
	}
	return compressCompact(raw)
}

// compressCompact returns raw, or raw zlib-compressed with the preset
// dictionary when that is shorter (the uncompressed form on a tie).
func compressCompact(raw []byte) ([]byte, error) {
	var buf bytes.Buffer
	buf.Grow(len(raw)/2 + 64)
	zw, _ := compactZlibWriters.Get().(*zlib.Writer)
	if zw == nil {
		zw, _ = zlib.NewWriterLevelDict(&buf, zlib.BestCompression, compactDictV1)
	} else {
		zw.Reset(&buf)
	}
	defer compactZlibWriters.Put(zw)
	if _, err := zw.Write(raw); err != nil {
		return nil, fmt.Errorf("reading: encode compact batch: compress: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("reading: encode compact batch: compress: %w", err)
	}
	if buf.Len() < len(raw) {
		return compactBuffer(&buf), nil
	}
	return raw, nil
}

// Decode reads a compact payload of version 1 or of version 2 with its
// context inline; a version 2 batch that references a context needs
// DecodeCompact.
func (compactEncoder) Decode(payload []byte) (Batch, error) {
	return DecodeCompact(payload, nil)
}

// compactState is what encoder and decoder carry from one reading to the
// next: per sensor the last ts, the last interval and the last number; for
// ids the last ULID's run and counter.
type compactState struct {
	ts0     int64
	sensors map[string]*sensorState
	prevRun uint64
	prevCtr int64 // -1 before a version 2 context's first counter
	haveRun bool
	ctx     *CompactContext // version 2: where a sensor's state starts
}

type sensorState struct {
	lastTS    int64
	lastDelta int64
	seen      bool
	fixed     bool // version 2: lastDelta is the context's interval, never learned
	phased    bool // version 2: the first reading is predicted at the next tick of phase
	phase     int64
	exp       int
	mant      *big.Int // nil: no number yet, which counts as 0 × 10^exp
	unit      string   // version 2: the context's unit, what a reading has unless told
	tags      map[string]string
}

func newCompactState(ts0 int64) *compactState {
	return &compactState{ts0: ts0, sensors: map[string]*sensorState{}}
}

func (st *compactState) sensor(name string) *sensorState {
	s := st.sensors[name]
	if s == nil {
		s = &sensorState{lastTS: st.ts0}
		if cs, ok := st.ctx.sensor(name); ok {
			s.lastDelta, s.fixed = cs.interval, cs.interval > 0
			s.phase, s.phased = cs.phase, cs.hasPhase && cs.interval > 0
			s.exp, s.unit, s.tags = cs.exp, cs.unit, cs.tags
		}
		st.sensors[name] = s
	}
	return s
}

// predictTS is where the sensor's next reading is expected: for its first
// reading ts0, or with a phase the sensor's next tick at or after ts0 (the
// first time t >= ts0 with t mod interval = phase); then its last ts plus
// its interval.
func (s *sensorState) predictTS() int64 {
	if !s.seen {
		if s.phased {
			return s.lastTS + floorMod(s.phase-s.lastTS, s.lastDelta)
		}
		return s.lastTS
	}
	return s.lastTS + s.lastDelta
}

// floorMod is a modulo m > 0 in [0, m).
func floorMod(a, m int64) int64 {
	r := a % m
	if r < 0 {
		r += m
	}
	return r
}

// advanceTS records ts as the sensor's latest. Unless the interval is fixed
// by the context, the first reading of a sensor sets no interval, so the
// second one carries its full interval, and each later one sets it anew.
func (s *sensorState) advanceTS(ts int64) {
	if s.seen && !s.fixed {
		s.lastDelta = ts - s.lastTS
	}
	s.lastTS, s.seen = ts, true
}

// compactColumns are the per-reading columns of a compact batch.
type compactColumns struct {
	sensors []uint64
	ts      []int64
	values  []any
	ids     []any
	units   []any // nil when no reading has a unit
	tags    []any // nil when no reading has tags
}

// encodeCompact builds the uncompressed compact batch array:
//
//	[1, device_id, strings, ts0, sensors, ts, values, ids, units / null, tags / null]
func encodeCompact(deviceID string, records [][]byte) ([]byte, error) {
	if err := checkDeviceID(deviceID); err != nil {
		return nil, err
	}
	rs, err := unmarshalRecords(records)
	if err != nil {
		return nil, err
	}
	var ts0 int64
	if len(rs) > 0 {
		ts0 = rs[0].TS.UnixMilli()
	}
	st := newCompactState(ts0)
	strs := stringTable{index: map[string]uint64{}, list: []string{}}
	n := len(rs)
	c := compactColumns{sensors: make([]uint64, n), ts: make([]int64, n), values: make([]any, n), ids: make([]any, n)}
	for i, r := range rs {
		if err := c.add(i, r, st, &strs); err != nil {
			return nil, &RecordError{Index: i, Err: err}
		}
	}
	var units, tags any
	if c.units != nil {
		units = c.units
	}
	if c.tags != nil {
		tags = c.tags
	}
	return cborEnc.Marshal([]any{uint64(compactSchemaVersion), deviceID, strs.list, ts0,
		c.sensors, c.ts, c.values, c.ids, units, tags})
}

// add puts reading i into the columns.
func (c *compactColumns) add(i int, r Reading, st *compactState, strs *stringTable) error {
	s := st.sensor(r.Sensor)
	c.sensors[i] = strs.ref(r.Sensor)
	ts := r.TS.UnixMilli()
	c.ts[i] = ts - s.predictTS()
	s.advanceTS(ts)
	v, err := compactValue(r.Value, s)
	if err != nil {
		return err
	}
	c.values[i] = v
	c.ids[i] = st.encodeID(r.ID, ts)
	if r.Unit != "" {
		if c.units == nil {
			c.units = make([]any, len(c.sensors))
		}
		c.units[i] = strs.ref(r.Unit)
	}
	if len(r.Tags) > 0 {
		if c.tags == nil {
			c.tags = make([]any, len(c.sensors))
		}
		// Sorted so that the string table, and so the payload, does not
		// depend on map iteration.
		m := make(map[uint64]uint64, len(r.Tags))
		for _, k := range sortedKeys(r.Tags) {
			m[strs.ref(k)] = strs.ref(r.Tags[k])
		}
		c.tags[i] = m
	}
	return nil
}

// compactValue encodes a top-level value. A number is sent as the
// difference of its mantissa from the sensor's last number when both have
// the same exponent and the difference fits in int64, else in full as a
// decimal fraction (tag 4, exponent 0 included).
func compactValue(v any, s *sensorState) (any, error) {
	num, ok := v.(json.Number)
	if !ok {
		return cborValue(v, "value", 0)
	}
	d, err := parseDecimal(string(num))
	if err != nil {
		return nil, fieldErrf("value", "%v", err)
	}
	m, bm := d.mantissa()
	if bm == nil {
		bm = big.NewInt(m)
	}
	prevExp, prev := s.exp, s.mant
	if prev == nil {
		prev = new(big.Int)
	}
	s.exp, s.mant = d.exp, bm
	if d.exp == prevExp {
		if delta := new(big.Int).Sub(bm, prev); delta.IsInt64() {
			return delta.Int64(), nil
		}
	}
	var mant any = bm
	if bm.IsInt64() {
		mant = bm.Int64()
	}
	return cbor.Tag{Number: 4, Content: []any{int64(d.exp), mant}}, nil
}

// encodeID writes an id in the shortest of its forms (see docs/payloads.md).
func (st *compactState) encodeID(id string, ts int64) any {
	if u, ok := parseUUID(id); ok {
		return cbor.Tag{Number: tagUUID, Content: u[:]}
	}
	u, ok := decodeULID(id)
	if !ok {
		return id
	}
	ms, run, ctr := idParts(u)
	defer func() { st.prevRun, st.prevCtr, st.haveRun = run, int64(ctr), true }()
	if !st.haveRun || run != st.prevRun {
		return u[:]
	}
	skip := int64(ctr) - st.prevCtr - 1
	if dms := int64(ms) - ts; dms != 0 {
		return []any{dms, skip}
	}
	return skip
}

// decodeCompactPayload tells the forms apart by the first bytes: a compact
// batch is a CBOR array of 7 to 10 elements (0x87 to 0x8a) whose first
// element is its version; anything else must be zlib with the version 1
// dictionary around such a batch.
func decodeCompactPayload(payload []byte, contexts func(uint32) (*CompactContext, bool)) (Batch, error) {
	if len(payload) == 0 {
		return Batch{}, fmt.Errorf("empty payload")
	}
	if payload[0] >= 0x87 && payload[0] <= 0x8a {
		return decodeCompactVersion(payload, contexts)
	}
	if !looksZlib(payload) {
		return Batch{}, fmt.Errorf("byte 0 is 0x%02x: neither a compact batch (0x87 to 0x8a) nor a zlib header", payload[0])
	}
	raw, err := inflateCompact(payload)
	if err != nil {
		return Batch{}, err
	}
	b, err := decodeCompactVersion(raw, contexts)
	if err != nil {
		return Batch{}, fmt.Errorf("inflated batch: %w", err)
	}
	return b, nil
}

// decodeCompactVersion decodes an uncompressed compact batch of either
// version, told by its second byte.
func decodeCompactVersion(data []byte, contexts func(uint32) (*CompactContext, bool)) (Batch, error) {
	switch {
	case len(data) < 2 || data[1] == compactSchemaVersion && data[0] == 0x8a:
		return decodeCompact(data)
	case data[1] == compactV2Version:
		return decodeCompactV2(data, contexts)
	case (data[0] == 0x87 || data[0] == 0x88) && data[1] == contextVersion:
		return Batch{}, errAt(0, "batch array", fmt.Errorf("this is a compact context, not a batch"))
	}
	return Batch{}, errAt(1, "version", fmt.Errorf("byte 0x%02x after a head of %d elements: not version 1 (10 elements) or 2 (7 to 10)", data[1], data[0]&0x1f))
}

// inflateCompact checks the zlib header names the version 1 dictionary and
// inflates at most maxInflated bytes.
func inflateCompact(payload []byte) ([]byte, error) {
	if payload[1]&0x20 == 0 || len(payload) < 6 {
		return nil, fmt.Errorf("zlib header at byte 0 names no preset dictionary (compact version 1 needs DICTID %08x)", CompactDictID)
	}
	if id := uint32(payload[2])<<24 | uint32(payload[3])<<16 | uint32(payload[4])<<8 | uint32(payload[5]); id != CompactDictID {
		return nil, fmt.Errorf("zlib DICTID %08x at byte 2 is not the compact version 1 dictionary (%08x)", id, CompactDictID)
	}
	zr, err := zlib.NewReaderDict(bytes.NewReader(payload), compactDictV1)
	if err != nil {
		return nil, fmt.Errorf("not zlib data: %w", err)
	}
	raw, err := readInflated(zr, compactInflateLimit(len(payload)))
	if err != nil {
		return nil, err
	}
	return raw, nil
}

// compactInflateLimit bounds what a compressed compact payload of n bytes
// may inflate to: 256 times its size plus 1 MiB (real batches deflate by
// far less than 256:1, a deflate bomb by about 1000:1), and never more than
// maxInflated. It keeps what a hostile payload makes a decoder allocate in
// proportion to the payload.
func compactInflateLimit(n int) int64 {
	return min(maxInflated, 256*int64(n)+1<<20)
}

// decodeTS checks and applies one ts column entry of the sensor.
func (s *sensorState) decodeTS(d int64) (int64, error) {
	p := s.predictTS()
	ts := p + d
	if (d > 0 && ts < p) || (d < 0 && ts > p) || ts < 0 || ts > maxUnixMilli {
		return 0, fmt.Errorf("ts %d leads out of range", d)
	}
	s.advanceTS(ts)
	return ts, nil
}

// decodeValue reverses compactValue.
func decodeValue(v any, s *sensorState) (any, error) {
	var exp int
	var m *big.Int
	switch t := v.(type) {
	case uint64, int64:
		delta, _ := cborMantissa(t)
		exp, m = s.exp, delta
		if s.mant != nil {
			m = delta.Add(delta, s.mant)
		}
	case big.Int:
		return nil, fmt.Errorf("a number delta beyond the 64-bit range")
	case cbor.Tag:
		if t.Number != 4 {
			return fromCBORValue(v, 0)
		}
		pair, ok := t.Content.([]any)
		if !ok || len(pair) != 2 {
			return nil, fmt.Errorf("decimal fraction is not a pair [exponent, mantissa]")
		}
		e, err := cborInt("exponent", pair[0])
		if err != nil {
			return nil, err
		}
		if e < -MaxNumberExponent || e > MaxNumberExponent {
			return nil, fmt.Errorf("exponent %d out of range", e)
		}
		if m, err = cborMantissa(pair[1]); err != nil {
			return nil, err
		}
		exp = int(e)
	default:
		return fromCBORValue(v, 0)
	}
	d, err := decimalFromInt(m, exp)
	if err != nil {
		return nil, err
	}
	s.exp, s.mant = exp, m
	return json.Number(d.String()), nil
}

// decodeID reverses encodeID.
func (st *compactState) decodeID(v any, ts int64) (string, error) {
	var dms, skip int64
	switch t := v.(type) {
	case string:
		return t, nil
	case cbor.Tag:
		b, ok := t.Content.([]byte)
		if t.Number != tagUUID || !ok || len(b) != 16 {
			return "", fmt.Errorf("tag %d is not a UUID id (tag %d of 16 bytes)", t.Number, tagUUID)
		}
		return formatUUID([16]byte(b)), nil
	case []byte:
		if len(t) != 16 {
			return "", fmt.Errorf("binary id of %d bytes, want 16", len(t))
		}
		u := [16]byte(t)
		var ctr uint32
		_, st.prevRun, ctr = idParts(u)
		st.prevCtr, st.haveRun = int64(ctr), true
		return encodeULID(u), nil
	case uint64, int64:
		n, err := cborInt("counter skip", t)
		if err != nil {
			return "", err
		}
		skip = n
	case []any:
		if len(t) != 2 {
			return "", fmt.Errorf("delta id of %d elements, want 2", len(t))
		}
		var err error
		if dms, err = cborInt("time delta", t[0]); err != nil {
			return "", err
		}
		if skip, err = cborInt("counter skip", t[1]); err != nil {
			return "", err
		}
	default:
		return "", fmt.Errorf("%T is not an id form", v)
	}
	return st.nextULID(ts, dms, skip)
}

func (st *compactState) nextULID(ts, dms, skip int64) (string, error) {
	if !st.haveRun {
		return "", fmt.Errorf("delta id before any binary id")
	}
	if skip < -(1<<33) || skip > 1<<33 {
		return "", fmt.Errorf("counter skip %d leads out of range", skip)
	}
	ctr := st.prevCtr + 1 + skip
	if ctr < 0 || ctr > 1<<32-1 {
		return "", fmt.Errorf("counter skip %d leads out of range", skip)
	}
	if dms < -maxUnixMilli || dms > 1<<48 || ts+dms < 0 || ts+dms >= 1<<48 {
		return "", fmt.Errorf("time delta %d leads out of range", dms)
	}
	st.prevCtr = ctr
	return encodeULID(idFromParts(uint64(ts+dms), st.prevRun, uint32(ctr))), nil
}

// compactTime is ts as a Reading holds it.
func compactTime(ms int64) time.Time { return time.UnixMilli(ms).UTC() }

// DetectEncoding names the encoding of a payload from its first bytes, for
// a payload that arrives without its content type (a file, a log): '{' (after
// whitespace) is json, 0x84 cbor, 0x87 to 0x8a compact; a zlib header with a
// preset dictionary is compact, without one cbor+deflate.
func DetectEncoding(payload []byte) (string, error) {
	trimmed := bytes.TrimLeft(payload, " \t\r\n")
	switch {
	case len(trimmed) > 0 && trimmed[0] == '{':
		return EncodingJSON, nil
	case len(payload) == 0:
		return "", fmt.Errorf("empty payload")
	case payload[0] == 0x84:
		return EncodingCBOR, nil
	case payload[0] >= 0x87 && payload[0] <= 0x8a:
		return EncodingCompact, nil
	case looksZlib(payload) && payload[1]&0x20 != 0:
		return EncodingCompact, nil
	case looksZlib(payload):
		return EncodingCBORDeflate, nil
	}
	return "", fmt.Errorf("byte 0 is 0x%02x: not the start of a json, cbor, cbor+deflate or compact payload", payload[0])
}

// WriteJSONLines writes b as `cellgate decode` prints it: one line per
// reading, {"device_id":"…","reading":<the reading's canonical JSON>}.
func (b Batch) WriteJSONLines(w io.Writer) error {
	prefix := append([]byte(`{"device_id":`), appendString(nil, b.DeviceID)...)
	prefix = append(prefix, `,"reading":`...)
	line := make([]byte, 0, 256)
	for i, r := range b.Readings {
		line = append(line[:0], prefix...)
		var err error
		if line, err = r.AppendJSON(line); err != nil {
			return fmt.Errorf("reading %d: %w", i, err)
		}
		line = append(line, '}', '\n')
		if _, err := w.Write(line); err != nil {
			return err
		}
	}
	return nil
}
