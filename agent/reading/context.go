package reading

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/fxamacker/cbor/v2"
)

// Bounds of a compact context (docs/payloads.md, "The context").
const (
	// MaxContextBytes is the largest encoded context a decoder accepts and
	// an encoder makes.
	MaxContextBytes = 4096
	// MaxContextSensors is the most sensors a context describes.
	MaxContextSensors = 256
	// maxContextInterval bounds a sensor's usual interval, in ms (49 days).
	maxContextInterval = 1<<32 - 1
)

// contextVersion is the first element of every context.
const contextVersion = 1

// CompactContext is an immutable context of compact version 2: what does
// not change from batch to batch (the device id, the id run and counter
// base, a base time, and per sensor its name, unit, tags, usual interval
// and decimal exponent), published once and referenced by its ID from
// every batch (docs/payloads.md, "compact version 2"). Bytes is its
// canonical CBOR and ID the big-endian uint32 of the first 4 bytes of
// SHA-256(Bytes). A CompactContext is safe for concurrent use.
type CompactContext struct {
	raw      []byte
	id       uint32
	deviceID string
	run      uint64 // 48 bits
	counter0 uint32
	t0       int64
	strs     []string
	strIndex map[string]uint64
	sensors  []contextSensor
	byName   map[string]int
	cycle    []int // sensor numbers in the order they usually report; nil for none
}

// contextSensor is one sensor of a context.
type contextSensor struct {
	name     string
	unit     string            // "" for none
	tags     map[string]string // nil for none
	interval int64             // ms; 0: not known, learned per batch
	exp      int
	phase    int64 // ts modulo interval of the sensor's readings, when hasPhase
	hasPhase bool
}

// ID is the context's id: the first 4 bytes of SHA-256(Bytes), big endian.
func (c *CompactContext) ID() uint32 { return c.id }

// HexID is ID as 8 lower-case hex digits, the last element of the MQTT
// topic the context is published on (<telemetry topic>/ctx/<HexID>).
func (c *CompactContext) HexID() string { return fmt.Sprintf("%08x", c.id) }

// Bytes returns a copy of the context's canonical CBOR, what is published.
func (c *CompactContext) Bytes() []byte { return bytes.Clone(c.raw) }

// DeviceID is the device the context describes.
func (c *CompactContext) DeviceID() string { return c.deviceID }

// sensor finds a sensor of the context by name; a nil context has none.
func (c *CompactContext) sensor(name string) (contextSensor, bool) {
	if c == nil {
		return contextSensor{}, false
	}
	i, ok := c.byName[name]
	if !ok {
		return contextSensor{}, false
	}
	return c.sensors[i], true
}

// contextID is the id of a context's bytes.
func contextID(raw []byte) uint32 {
	sum := sha256.Sum256(raw)
	return binary.BigEndian.Uint32(sum[:4])
}

// newCompactContext encodes a context canonically:
//
//	[1, device_id, run, counter0, t0, strings, sensors, ? cycle]
//	sensor = [name, unit / null, tags / null, interval, exp, ? phase]
//
// with strings in order of first use by the sensors (name, unit, tag keys
// in byte order each followed by its value), a phase only for a sensor
// that has one (0 <= phase < interval), and cycle (at least 2 distinct
// sensor numbers) only when not empty.
func newCompactContext(deviceID string, run uint64, counter0 uint32, t0 int64, sensors []contextSensor, cycle []int) (*CompactContext, error) {
	if err := checkCycle(cycle, len(sensors)); err != nil {
		return nil, fmt.Errorf("context: %w", err)
	}
	strs := stringTable{index: map[string]uint64{}, list: []string{}}
	entries := make([]any, len(sensors))
	byName := make(map[string]int, len(sensors))
	for i, s := range sensors {
		if _, dup := byName[s.name]; dup {
			return nil, fmt.Errorf("context: sensor %q twice", s.name)
		}
		byName[s.name] = i
		var unit, tags any
		name := strs.ref(s.name)
		if s.unit != "" {
			unit = strs.ref(s.unit)
		}
		if len(s.tags) > 0 {
			m := make(map[uint64]uint64, len(s.tags))
			for _, k := range sortedKeys(s.tags) {
				m[strs.ref(k)] = strs.ref(s.tags[k])
			}
			tags = m
		}
		entry := []any{name, unit, tags, uint64(s.interval), int64(s.exp)}
		if s.hasPhase {
			if s.phase < 0 || s.phase >= s.interval {
				return nil, fmt.Errorf("context: sensor %q: phase %d is not from 0 to its interval %d - 1", s.name, s.phase, s.interval)
			}
			entry = append(entry, uint64(s.phase))
		}
		entries[i] = entry
	}
	var runBytes [8]byte
	binary.BigEndian.PutUint64(runBytes[:], run)
	arr := []any{uint64(contextVersion), deviceID, runBytes[2:], uint64(counter0), uint64(t0), strs.list, entries}
	if len(cycle) > 0 {
		arr = append(arr, cycle)
	}
	raw, err := cborEnc.Marshal(arr)
	if err != nil {
		return nil, fmt.Errorf("context: %w", err)
	}
	return &CompactContext{raw: raw, id: contextID(raw), deviceID: deviceID, run: run, counter0: counter0, t0: t0,
		strs: strs.list, strIndex: strs.index, sensors: slices.Clone(sensors), byName: byName, cycle: slices.Clone(cycle)}, nil
}

// checkCycle enforces the cycle's rules: none, or at least 2 distinct
// numbers of the context's n sensors.
func checkCycle(cycle []int, n int) error {
	if len(cycle) == 1 {
		return errors.New("cycle: 1 sensor, want none or at least 2")
	}
	seen := make(map[int]bool, len(cycle))
	for i, k := range cycle {
		if k < 0 || k >= n {
			return fmt.Errorf("cycle[%d]: %d is not one of the %d sensors", i, k, n)
		}
		if seen[k] {
			return fmt.Errorf("cycle[%d]: sensor %d twice", i, k)
		}
		seen[k] = true
	}
	return nil
}

// ParseCompactContext reads a context as published (Bytes). It refuses,
// naming the byte offset, anything off the schema, a context over
// MaxContextBytes or MaxContextSensors, a sensor, unit or tag that breaks
// the reading's rules, a sensor named twice, and a context not in its
// canonical encoding (so that one context has one id).
func ParseCompactContext(b []byte) (*CompactContext, error) {
	c, err := parseContextAt(b, 0, len(b))
	if err != nil {
		return nil, fmt.Errorf("reading: parse compact context: %w", err)
	}
	return c, nil
}

// parseContextAt parses the context that spans data[start:end]; offsets in
// its errors are offsets in data.
func parseContextAt(data []byte, start, end int) (*CompactContext, error) {
	if end-start > MaxContextBytes {
		return nil, errAt(start, "context", fmt.Errorf("%d bytes, more than %d", end-start, MaxContextBytes))
	}
	c := &cborCursor{data: data[:end], pos: start}
	n, _, err := c.arrayHead("context", false)
	if err != nil {
		return nil, err
	}
	if n != 7 && n != 8 {
		return nil, errAt(start, "context", fmt.Errorf("%d elements, want 7 or 8", n))
	}
	h, err := readContextHead(c)
	if err != nil {
		return nil, err
	}
	strs, err := readStringArray(c, "context strings")
	if err != nil {
		return nil, err
	}
	sensors, err := readContextSensors(c, strs)
	if err != nil {
		return nil, err
	}
	var cycle []int
	if n == 8 {
		if cycle, err = readCycle(c, len(sensors)); err != nil {
			return nil, err
		}
	}
	if c.pos != end {
		return nil, errAt(c.pos, "after the context", fmt.Errorf("%d bytes left over", end-c.pos))
	}
	ctx, err := newCompactContext(h.deviceID, h.run, h.counter0, h.t0, sensors, cycle)
	if err != nil {
		return nil, errAt(start, "context", err)
	}
	if got := data[start:end]; !bytes.Equal(ctx.raw, got) {
		i := 0
		for i < len(got) && i < len(ctx.raw) && got[i] == ctx.raw[i] {
			i++
		}
		return nil, errAt(start+i, "context", errors.New("not the canonical encoding (strings in order of first use by the sensors, each once; shortest integers)"))
	}
	return ctx, nil
}

// contextHead is the context's elements before its strings.
type contextHead struct {
	deviceID string
	run      uint64
	counter0 uint32
	t0       int64
}

func readContextHead(c *cborCursor) (contextHead, error) {
	var h contextHead
	at := c.pos
	var version any
	if err := c.item("context version", &version); err != nil {
		return h, err
	}
	if v, ok := version.(uint64); !ok || v != contextVersion {
		return h, errAt(at, "context version", fmt.Errorf("%v, want %d", version, contextVersion))
	}
	at = c.pos
	var dev any
	if err := c.item("device_id", &dev); err != nil {
		return h, err
	}
	s, ok := dev.(string)
	if !ok {
		return h, errAt(at, "device_id", fmt.Errorf("%T, want a text string", dev))
	}
	if err := checkDeviceID(s); err != nil {
		return h, errAt(at, "device_id", err)
	}
	h.deviceID = s
	at = c.pos
	var run any
	if err := c.item("run", &run); err != nil {
		return h, err
	}
	rb, ok := run.([]byte)
	if !ok || len(rb) != 6 {
		return h, errAt(at, "run", fmt.Errorf("%T, want a byte string of 6 bytes", run))
	}
	var full [8]byte
	copy(full[2:], rb)
	h.run = binary.BigEndian.Uint64(full[:])
	ctr, err := c.uintItem("counter0", 1<<32-1)
	if err != nil {
		return h, err
	}
	h.counter0 = uint32(ctr)
	t0, err := c.uintItem("t0", maxUnixMilli)
	if err != nil {
		return h, err
	}
	h.t0 = int64(t0)
	return h, nil
}

// uintItem reads an unsigned integer of at most limit.
func (c *cborCursor) uintItem(what string, limit uint64) (uint64, error) {
	at := c.pos
	var v any
	if err := c.item(what, &v); err != nil {
		return 0, err
	}
	u, ok := v.(uint64)
	if !ok || u > limit {
		return 0, errAt(at, what, fmt.Errorf("%v is not an integer from 0 to %d", v, limit))
	}
	return u, nil
}

// readStringArray reads an array of text strings.
func readStringArray(c *cborCursor, what string) ([]string, error) {
	list, offs, _, err := c.column(what, false)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(list))
	for i, v := range list {
		s, ok := v.(string)
		if !ok {
			return nil, errAt(offs[i], fmt.Sprintf("%s[%d]", what, i), fmt.Errorf("%T, want a text string", v))
		}
		out[i] = s
	}
	return out, nil
}

func readContextSensors(c *cborCursor, strs []string) ([]contextSensor, error) {
	at := c.pos
	n, _, err := c.arrayHead("context sensors", false)
	if err != nil {
		return nil, err
	}
	if n > MaxContextSensors {
		return nil, errAt(at, "context sensors", fmt.Errorf("%d sensors, more than %d", n, MaxContextSensors))
	}
	out := make([]contextSensor, n)
	seen := make(map[string]bool, n)
	for i := range out {
		what := fmt.Sprintf("context sensor %d", i)
		at := c.pos
		if out[i], err = readContextSensor(c, what, strs); err != nil {
			return nil, err
		}
		if seen[out[i].name] {
			return nil, errAt(at, what, fmt.Errorf("sensor %q is described twice", out[i].name))
		}
		seen[out[i].name] = true
	}
	return out, nil
}

// readContextSensor reads [name, unit / null, tags / null, interval, exp]
// and checks the sensor, unit and tags by the reading's rules.
func readContextSensor(c *cborCursor, what string, strs []string) (contextSensor, error) {
	var s contextSensor
	at := c.pos
	var e []any
	if err := c.item(what, &e); err != nil {
		return s, err
	}
	if len(e) != 5 && len(e) != 6 {
		return s, errAt(at, what, fmt.Errorf("%d elements, want 5 or 6 [name, unit, tags, interval, exp, ? phase]", len(e)))
	}
	tbl := stringRefs{strs: strs}
	var err error
	if s.name, err = tbl.str(e[0]); err != nil {
		return s, errAt(at, what, fmt.Errorf("name: %w", err))
	}
	if e[1] != nil {
		if s.unit, err = tbl.str(e[1]); err != nil {
			return s, errAt(at, what, fmt.Errorf("unit: %w", err))
		}
	}
	if e[2] != nil {
		if s.tags, err = tbl.tagMap(e[2]); err != nil {
			return s, errAt(at, what, fmt.Errorf("tags: %w", err))
		}
	}
	iv, ok := e[3].(uint64)
	if !ok || iv > maxContextInterval {
		return s, errAt(at, what, fmt.Errorf("interval %v is not an integer from 0 to %d", e[3], uint64(maxContextInterval)))
	}
	s.interval = int64(iv)
	exp, err := cborInt("exponent", e[4])
	if err != nil || exp < -MaxNumberExponent || exp > MaxNumberExponent {
		return s, errAt(at, what, fmt.Errorf("exponent %v is not an integer from %d to %d", e[4], -MaxNumberExponent, MaxNumberExponent))
	}
	s.exp = int(exp)
	if len(e) == 6 {
		ph, ok := e[5].(uint64)
		if !ok || ph >= iv {
			return s, errAt(at, what, fmt.Errorf("phase %v is not an integer from 0 to the interval %d - 1", e[5], iv))
		}
		s.phase, s.hasPhase = int64(ph), true
	}
	r := Reading{ID: "x", Sensor: s.name, TS: compactTime(0), Value: true, Unit: s.unit, Tags: s.tags}
	if err := r.Validate(); err != nil {
		var pe *ParseError
		if errors.As(err, &pe) {
			err = fmt.Errorf("field %q: %s", pe.Field, pe.Problem)
		}
		return s, errAt(at, what, err)
	}
	return s, nil
}

// readCycle reads the context's cycle: at least 2 distinct numbers of its
// n sensors.
func readCycle(c *cborCursor, n int) ([]int, error) {
	at := c.pos
	list, offs, _, err := c.column("cycle", false)
	if err != nil {
		return nil, err
	}
	if len(list) < 2 {
		return nil, errAt(at, "cycle", fmt.Errorf("%d entries, want at least 2", len(list)))
	}
	out := make([]int, len(list))
	seen := make(map[uint64]bool, len(list))
	for i, v := range list {
		k, ok := v.(uint64)
		if !ok || k >= uint64(n) || seen[k] {
			return nil, errAt(offs[i], fmt.Sprintf("cycle[%d]", i), fmt.Errorf("%v is not one of the %d sensors not already in the cycle", v, n))
		}
		seen[k], out[i] = true, int(k)
	}
	return out, nil
}

// stringRefs resolves string indices of a context or batch.
type stringRefs struct{ strs []string }

func (t stringRefs) str(v any) (string, error) {
	i, ok := v.(uint64)
	if !ok || i >= uint64(len(t.strs)) {
		return "", fmt.Errorf("%v is not an index into the %d strings", v, len(t.strs))
	}
	return t.strs[i], nil
}

// tagMap resolves a non-empty map of key index to value index.
func (t stringRefs) tagMap(v any) (map[string]string, error) {
	m, ok := v.(map[any]any)
	if !ok {
		return nil, fmt.Errorf("%T, want a map", v)
	}
	if len(m) == 0 {
		return nil, errors.New("empty map")
	}
	tags := make(map[string]string, len(m))
	for k, v := range m {
		ks, err := t.str(k)
		if err != nil {
			return nil, fmt.Errorf("key: %w", err)
		}
		vs, err := t.str(v)
		if err != nil {
			return nil, fmt.Errorf("value of %q: %w", ks, err)
		}
		if _, dup := tags[ks]; dup {
			return nil, fmt.Errorf("key %q appears twice", ks)
		}
		tags[ks] = vs
	}
	return tags, nil
}

// sameDescription reports whether two sensor lists name the same sensors
// with the same units and tags, in any order.
func sameDescription(a, b []contextSensor) bool {
	if len(a) != len(b) {
		return false
	}
	idx := make(map[string]contextSensor, len(a))
	for _, s := range a {
		idx[s.name] = s
	}
	for _, s := range b {
		o, ok := idx[s.name]
		if !ok || o.unit != s.unit || !maps.Equal(o.tags, s.tags) {
			return false
		}
	}
	return true
}

// rawContext lets a context's bytes be embedded in a batch as they are.
func rawContext(c *CompactContext) cbor.RawMessage { return cbor.RawMessage(c.raw) }

// t0Time is the context's base time.
func (c *CompactContext) t0Time() time.Time { return time.UnixMilli(c.t0).UTC() }
