package reading

import (
	"bytes"
	"compress/zlib"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	"strconv"
	"sync"
	"time"

	"github.com/fxamacker/cbor/v2"
)

// tagUUID is the IANA CBOR tag of a binary UUID (16 bytes).
const tagUUID = 37

// cborSchemaVersion is the first element of every CBOR batch.
const cborSchemaVersion = 1

// MaxInflatedBytes bounds what a cbor+deflate payload may inflate to when
// decoded, so a hostile payload cannot exhaust the consumer's memory.
const MaxInflatedBytes = 64 << 20

// maxInflated is MaxInflatedBytes; a test lowers it to build its bomb fast.
var maxInflated int64 = MaxInflatedBytes

// The CBOR modes are built once: deterministic encoding (RFC 8949 core
// deterministic map order, shortest integers, bignums only for mantissas
// beyond int64), strict decoding (duplicate map keys and invalid UTF-8
// refused).
var (
	cborEnc = func() cbor.EncMode {
		em, err := cbor.EncOptions{
			Sort:          cbor.SortCoreDeterministic,
			BigIntConvert: cbor.BigIntConvertNone,
			IndefLength:   cbor.IndefLengthForbidden,
		}.EncMode()
		if err != nil {
			panic(err)
		}
		return em
	}()
	cborDec = func() cbor.DecMode {
		dm, err := cbor.DecOptions{
			DupMapKey:       cbor.DupMapKeyEnforcedAPF,
			MaxNestedLevels: MaxValueDepth + 8,
			UTF8:            cbor.UTF8RejectInvalid,
			BigIntDec:       cbor.BigIntDecodeValue,
		}.DecMode()
		if err != nil {
			panic(err)
		}
		return dm
	}()
)

// cborEncoder writes the compact CBOR batch documented in README.md.
type cborEncoder struct{}

func (cborEncoder) Name() string            { return EncodingCBOR }
func (cborEncoder) ContentType() string     { return ContentTypeCBOR }
func (cborEncoder) ContentEncoding() string { return "" }

func (cborEncoder) Encode(deviceID string, records [][]byte) ([]byte, error) {
	b, err := encodeCBOR(deviceID, records)
	if err != nil {
		return nil, fmt.Errorf("reading: encode cbor batch: %w", err)
	}
	return b, nil
}

func (cborEncoder) Decode(payload []byte) (Batch, error) {
	b, err := decodeCBOR(payload)
	if err != nil {
		return Batch{}, fmt.Errorf("reading: decode cbor batch: %w", err)
	}
	return b, nil
}

// cborDeflateEncoder is cborEncoder's output compressed in the zlib format.
type cborDeflateEncoder struct{}

func (cborDeflateEncoder) Name() string            { return EncodingCBORDeflate }
func (cborDeflateEncoder) ContentType() string     { return ContentTypeCBOR }
func (cborDeflateEncoder) ContentEncoding() string { return ContentEncodingDeflate }

// zlibWriters recycles compressors: a zlib.Writer at BestCompression holds
// several hundred KiB of state.
var zlibWriters sync.Pool

func (cborDeflateEncoder) Encode(deviceID string, records [][]byte) ([]byte, error) {
	raw, err := encodeCBOR(deviceID, records)
	if err != nil {
		return nil, fmt.Errorf("reading: encode cbor+deflate batch: %w", err)
	}
	var buf bytes.Buffer
	buf.Grow(len(raw)/2 + 64)
	zw, _ := zlibWriters.Get().(*zlib.Writer)
	if zw == nil {
		zw, _ = zlib.NewWriterLevel(&buf, zlib.BestCompression)
	} else {
		zw.Reset(&buf)
	}
	defer zlibWriters.Put(zw)
	if _, err := zw.Write(raw); err != nil {
		return nil, fmt.Errorf("reading: encode cbor+deflate batch: compress: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("reading: encode cbor+deflate batch: compress: %w", err)
	}
	return compactBuffer(&buf), nil
}

func (cborDeflateEncoder) Decode(payload []byte) (Batch, error) {
	zr, err := zlib.NewReader(bytes.NewReader(payload))
	if err != nil {
		return Batch{}, fmt.Errorf("reading: decode cbor+deflate batch: not zlib data: %w", err)
	}
	raw, err := io.ReadAll(io.LimitReader(zr, maxInflated+1))
	if err != nil {
		return Batch{}, fmt.Errorf("reading: decode cbor+deflate batch: inflate: %w", err)
	}
	if int64(len(raw)) > maxInflated {
		return Batch{}, fmt.Errorf("reading: decode cbor+deflate batch: inflates to more than %d bytes", maxInflated)
	}
	if err := zr.Close(); err != nil {
		return Batch{}, fmt.Errorf("reading: decode cbor+deflate batch: inflate: %w", err)
	}
	b, err := decodeCBOR(raw)
	if err != nil {
		return Batch{}, fmt.Errorf("reading: decode cbor+deflate batch: %w", err)
	}
	return b, nil
}

// stringTable numbers distinct strings in order of first use.
type stringTable struct {
	index map[string]uint64
	list  []string
}

func (t *stringTable) ref(s string) uint64 {
	if i, ok := t.index[s]; ok {
		return i
	}
	i := uint64(len(t.list))
	t.index[s] = i
	t.list = append(t.list, s)
	return i
}

// encodeCBOR builds the batch array:
//
//	[1, device_id, strings, readings]
//	reading = [sensor, dts, value, id, ?unit, ?tags]
//
// See README.md for the meaning of each element.
func encodeCBOR(deviceID string, records [][]byte) ([]byte, error) {
	if err := checkDeviceID(deviceID); err != nil {
		return nil, err
	}
	rs, err := unmarshalRecords(records)
	if err != nil {
		return nil, err
	}
	strs := stringTable{index: map[string]uint64{}, list: []string{}}
	out := make([]any, len(rs))
	var (
		prevTS  int64
		prevRun uint64
		prevCtr uint32
		haveRun bool
	)
	for i, r := range rs {
		ts := r.TS.UnixMilli()
		value, err := cborValue(r.Value, "value", 0)
		if err != nil {
			return nil, &RecordError{Index: i, Err: err}
		}
		var id any = r.ID
		if u, ok := parseUUID(r.ID); ok {
			id = cbor.Tag{Number: tagUUID, Content: u[:]}
		} else if u, ok := decodeULID(r.ID); ok {
			ms, run, ctr := idParts(u)
			if haveRun && run == prevRun {
				dctr := int64(ctr) - int64(prevCtr)
				if dms := int64(ms) - ts; dms == 0 {
					id = dctr
				} else {
					id = []any{dms, dctr}
				}
			} else {
				id = u[:]
			}
			prevRun, prevCtr, haveRun = run, ctr, true
		}
		readingArr := []any{strs.ref(r.Sensor), ts - prevTS, value, id}
		prevTS = ts
		if r.Unit != "" || len(r.Tags) > 0 {
			if r.Unit != "" {
				readingArr = append(readingArr, strs.ref(r.Unit))
			} else {
				readingArr = append(readingArr, nil)
			}
		}
		if len(r.Tags) > 0 {
			// Sorted so that the string table's order, and so the
			// payload, does not depend on map iteration.
			tags := make(map[uint64]uint64, len(r.Tags))
			for _, k := range sortedKeys(r.Tags) {
				tags[strs.ref(k)] = strs.ref(r.Tags[k])
			}
			readingArr = append(readingArr, tags)
		}
		out[i] = readingArr
	}
	return cborEnc.Marshal([]any{uint64(cborSchemaVersion), deviceID, strs.list, out})
}

// cborValue converts a reading's value (as Unmarshal gives it) for CBOR:
// numbers become integers, bignums or decimal fractions (tag 4).
func cborValue(v any, path string, depth int) (any, error) {
	switch v.(type) {
	case map[string]any, []any:
		if depth >= MaxValueDepth {
			return nil, fieldErrf(path, "nested deeper than %d levels", MaxValueDepth)
		}
	}
	switch v := v.(type) {
	case nil:
		if depth == 0 {
			return nil, fieldErrf(path, "missing")
		}
		return nil, nil
	case string, bool:
		return v, nil
	case json.Number:
		d, err := parseDecimal(string(v))
		if err != nil {
			return nil, fieldErrf(path, "%v", err)
		}
		m, bm := d.mantissa()
		var mant any = m
		if bm != nil {
			mant = bm
		}
		if d.exp == 0 {
			return mant, nil
		}
		return cbor.Tag{Number: 4, Content: []any{int64(d.exp), mant}}, nil
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			ce, err := cborValue(e, path+"."+k, depth+1)
			if err != nil {
				return nil, err
			}
			out[k] = ce
		}
		return out, nil
	case []any:
		if depth == 0 {
			return nil, fieldErrf(path, "an array is not allowed (want %s)", valueKindWanted)
		}
		out := make([]any, len(v))
		for i, e := range v {
			ce, err := cborValue(e, path+"["+strconv.Itoa(i)+"]", depth+1)
			if err != nil {
				return nil, err
			}
			out[i] = ce
		}
		return out, nil
	}
	return nil, fieldErrf(path, "Go type %T cannot be encoded", v)
}

// decodeCBOR parses a batch array written by encodeCBOR.
func decodeCBOR(data []byte) (Batch, error) {
	var b Batch
	var top []any
	if err := cborDec.Unmarshal(data, &top); err != nil {
		return b, fmt.Errorf("not a CBOR batch array: %w", err)
	}
	if len(top) != 4 {
		return b, fmt.Errorf("batch array has %d elements, want 4", len(top))
	}
	if v, ok := top[0].(uint64); !ok || v != cborSchemaVersion {
		return b, fmt.Errorf("batch schema version %v, want %d", top[0], cborSchemaVersion)
	}
	dev, ok := top[1].(string)
	if !ok {
		return b, fmt.Errorf("device id is %T, want a text string", top[1])
	}
	if err := checkDeviceID(dev); err != nil {
		return b, err
	}
	b.DeviceID = dev
	strList, ok := top[2].([]any)
	if !ok {
		return b, fmt.Errorf("string table is %T, want an array", top[2])
	}
	strs := make([]string, len(strList))
	for i, s := range strList {
		if strs[i], ok = s.(string); !ok {
			return b, fmt.Errorf("string table entry %d is %T, want a text string", i, s)
		}
	}
	list, ok := top[3].([]any)
	if !ok {
		return b, fmt.Errorf("readings are %T, want an array", top[3])
	}
	d := cborReadingDecoder{strs: strs}
	b.Readings = make([]Reading, len(list))
	for i, e := range list {
		r, err := d.reading(e)
		if err != nil {
			return Batch{}, fmt.Errorf("reading %d: %w", i, err)
		}
		b.Readings[i] = r
	}
	return b, nil
}

// cborReadingDecoder carries the delta state from one reading to the next.
type cborReadingDecoder struct {
	strs    []string
	prevTS  int64
	prevRun uint64
	prevCtr uint32
	haveRun bool
}

func (d *cborReadingDecoder) str(what string, v any) (string, error) {
	i, ok := v.(uint64)
	if !ok || i >= uint64(len(d.strs)) {
		return "", fmt.Errorf("%s %v is not an index into the string table of %d", what, v, len(d.strs))
	}
	return d.strs[i], nil
}

func (d *cborReadingDecoder) reading(e any) (Reading, error) {
	var r Reading
	arr, ok := e.([]any)
	if !ok || len(arr) < 4 || len(arr) > 6 {
		return r, fmt.Errorf("want an array of 4 to 6 elements, got %T of %d", e, len(arr))
	}
	var err error
	if r.Sensor, err = d.str("sensor", arr[0]); err != nil {
		return r, err
	}
	dts, err := cborInt("ts delta", arr[1])
	if err != nil {
		return r, err
	}
	ts := d.prevTS + dts
	if (dts > 0 && ts < d.prevTS) || ts < 0 || ts > maxUnixMilli {
		return r, fmt.Errorf("ts delta %d leads out of range", dts)
	}
	d.prevTS = ts
	r.TS = time.UnixMilli(ts).UTC()
	if r.Value, err = fromCBORValue(arr[2], 0); err != nil {
		return r, fmt.Errorf("value: %w", err)
	}
	if r.ID, err = d.id(arr[3], ts); err != nil {
		return r, fmt.Errorf("id: %w", err)
	}
	if len(arr) >= 5 && arr[4] != nil {
		if r.Unit, err = d.str("unit", arr[4]); err != nil {
			return r, err
		}
	}
	if len(arr) == 6 {
		m, ok := arr[5].(map[any]any)
		if !ok {
			return r, fmt.Errorf("tags are %T, want a map", arr[5])
		}
		if len(m) == 0 {
			return r, errors.New("tags map is empty (the schema leaves it out instead)")
		}
		r.Tags = make(map[string]string, len(m))
		for k, v := range m {
			ks, err := d.str("tag key", k)
			if err != nil {
				return r, err
			}
			vs, err := d.str("tag value", v)
			if err != nil {
				return r, err
			}
			if _, dup := r.Tags[ks]; dup {
				return r, fmt.Errorf("tag key %q appears twice", ks)
			}
			r.Tags[ks] = vs
		}
	}
	if err := r.Validate(); err != nil {
		var pe *ParseError
		if errors.As(err, &pe) {
			return r, fmt.Errorf("field %q: %s", pe.Field, pe.Problem)
		}
		return r, err
	}
	return r, nil
}

// id decodes the four id forms (see README.md).
func (d *cborReadingDecoder) id(v any, ts int64) (string, error) {
	var dms, dctr int64
	switch v := v.(type) {
	case string:
		return v, nil
	case cbor.Tag:
		b, ok := v.Content.([]byte)
		if v.Number != tagUUID || !ok || len(b) != 16 {
			return "", fmt.Errorf("tag %d is not a UUID id (tag %d of 16 bytes)", v.Number, tagUUID)
		}
		return formatUUID([16]byte(b)), nil
	case []byte:
		if len(v) != 16 {
			return "", fmt.Errorf("binary id of %d bytes, want 16", len(v))
		}
		u := [16]byte(v)
		_, d.prevRun, d.prevCtr = idParts(u)
		d.haveRun = true
		return encodeULID(u), nil
	case uint64, int64:
		n, err := cborInt("counter delta", v)
		if err != nil {
			return "", err
		}
		dctr = n
	case []any:
		if len(v) != 2 {
			return "", fmt.Errorf("delta id of %d elements, want 2", len(v))
		}
		var err error
		if dms, err = cborInt("time delta", v[0]); err != nil {
			return "", err
		}
		if dctr, err = cborInt("counter delta", v[1]); err != nil {
			return "", err
		}
	default:
		return "", fmt.Errorf("%T is not an id form", v)
	}
	if !d.haveRun {
		return "", errors.New("delta id before any binary id")
	}
	ctr := int64(d.prevCtr) + dctr
	if ctr < 0 || ctr > math.MaxUint32 {
		return "", fmt.Errorf("counter delta %d leads out of range", dctr)
	}
	ms := ts + dms
	if dms < -maxUnixMilli || dms > 1<<48 || ms < 0 || ms >= 1<<48 {
		return "", fmt.Errorf("time delta %d leads out of range", dms)
	}
	d.prevCtr = uint32(ctr)
	return encodeULID(idFromParts(uint64(ms), d.prevRun, d.prevCtr)), nil
}

func cborInt(what string, v any) (int64, error) {
	switch v := v.(type) {
	case uint64:
		if v <= math.MaxInt64 {
			return int64(v), nil
		}
	case int64:
		return v, nil
	}
	return 0, fmt.Errorf("%s %v (%T) is not an integer in the int64 range", what, v, v)
}

// fromCBORValue converts a decoded value back to Unmarshal's types.
func fromCBORValue(v any, depth int) (any, error) {
	switch v.(type) {
	case map[any]any, []any:
		if depth >= MaxValueDepth {
			return nil, fmt.Errorf("nested deeper than %d levels", MaxValueDepth)
		}
	}
	switch v := v.(type) {
	case nil:
		if depth == 0 {
			return nil, errors.New("null is not a value")
		}
		return nil, nil
	case string, bool:
		return v, nil
	case uint64, int64, big.Int:
		m, err := cborMantissa(v)
		if err != nil {
			return nil, err
		}
		d, err := decimalFromInt(m, 0)
		if err != nil {
			return nil, err
		}
		return json.Number(d.String()), nil
	case cbor.Tag:
		if v.Number != 4 {
			return nil, fmt.Errorf("tag %d is not used by this schema", v.Number)
		}
		pair, ok := v.Content.([]any)
		if !ok || len(pair) != 2 {
			return nil, errors.New("decimal fraction is not a pair [exponent, mantissa]")
		}
		exp, err := cborInt("exponent", pair[0])
		if err != nil {
			return nil, err
		}
		if exp < -MaxNumberExponent || exp > MaxNumberExponent {
			return nil, fmt.Errorf("exponent %d out of range", exp)
		}
		m, err := cborMantissa(pair[1])
		if err != nil {
			return nil, err
		}
		d, err := decimalFromInt(m, int(exp))
		if err != nil {
			return nil, err
		}
		return json.Number(d.String()), nil
	case map[any]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			ks, ok := k.(string)
			if !ok {
				return nil, fmt.Errorf("object key %v is %T, want a text string", k, k)
			}
			ce, err := fromCBORValue(e, depth+1)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", ks, err)
			}
			out[ks] = ce
		}
		return out, nil
	case []any:
		if depth == 0 {
			return nil, errors.New("an array is not a value")
		}
		out := make([]any, len(v))
		for i, e := range v {
			ce, err := fromCBORValue(e, depth+1)
			if err != nil {
				return nil, fmt.Errorf("[%d]: %w", i, err)
			}
			out[i] = ce
		}
		return out, nil
	}
	return nil, fmt.Errorf("%T is not a value of this schema", v)
}

func cborMantissa(v any) (*big.Int, error) {
	switch v := v.(type) {
	case uint64:
		return new(big.Int).SetUint64(v), nil
	case int64:
		return big.NewInt(v), nil
	case big.Int:
		return &v, nil
	}
	return nil, fmt.Errorf("mantissa %v is %T, want an integer", v, v)
}
