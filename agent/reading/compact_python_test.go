package reading

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cellgate/cellgate/internal/testutil"
)

// edgeCaseRecords are readings at the edges of what the payload schemas
// say: negative and big numbers, digits no float64 holds, extreme
// exponents, unicode tags and units, client ids (text and UUID), readings
// without a unit, a value that is an object, timestamps going backwards.
func edgeCaseRecords(tb testing.TB) [][]byte {
	tb.Helper()
	ids, err := NewIDGenerator(bytes.NewReader([]byte{1, 2, 3, 4, 5, 6}))
	if err != nil {
		tb.Fatal(err)
	}
	now := time.Date(2026, 12, 6, 4, 0, 0, 0, time.UTC)
	bodies := []string{
		`{"sensor":"t1","value":-12.5,"unit":"°C","tags":{"site":"Zürich ☃","room":"会議室"}}`,
		`{"sensor":"t1","value":-12.4,"unit":"°C","tags":{"site":"Zürich ☃","room":"会議室"}}`,
		`{"sensor":"t1","value":-12.40}`,
		`{"sensor":"big","value":123456789012345678901234567890}`,
		`{"sensor":"big","value":-123456789012345678901234567891}`,
		`{"sensor":"big","value":9223372036854775807}`,
		`{"sensor":"big","value":-9223372036854775808}`,
		`{"sensor":"f","value":0.1234567890123456789012345}`,
		`{"sensor":"f","value":1.7976931348623157e308}`,
		`{"sensor":"f","value":5e-324}`,
		`{"sensor":"f","value":1e-9999}`,
		`{"sensor":"f","value":0.00001}`,
		`{"id":"client-7","sensor":"c","value":1,"ts":"2026-12-06T03:59:00.001Z"}`,
		`{"id":"f47ac10b-58cc-4372-a567-0e02b2c3d479","sensor":"c","value":2}`,
		`{"id":"01JEB1K5X7ABCDEFGHJKMNPQRS","sensor":"c","value":3}`,
		`{"sensor":"door","value":true}`,
		`{"sensor":"status","value":"ok \"quoted\" \\ \n é 😀"}`,
		`{"sensor":"gps","value":{"lat":52.520008,"n":-7,"list":[1e3,"x",false,null],"deep":{"er":0.000001}}}`,
		`{"sensor":"t1","value":-12.3,"ts":0}`,
	}
	var out [][]byte
	for i, body := range bodies {
		rs, err := ParseWithIDs([]byte(body), now.Add(time.Duration(i)*1234*time.Millisecond), Limits{}, ids)
		if err != nil {
			tb.Fatalf("body %d: %v", i, err)
		}
		b, err := rs[0].MarshalJSON()
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// pythonPayload is one payload for the Python decoder and what Go makes of
// it.
type pythonPayload struct {
	name    string
	payload []byte
}

// TestPythonDecoderFollowingTheDocsAgrees decodes compact (version 1,
// version 2 inline and version 2 by reference with the published
// contexts), cbor and cbor+deflate payloads with testdata/payload_decode.py,
// a decoder written from docs/payloads.md alone on Python's cbor2, and
// requires its JSON lines to equal the Go decoder's byte for byte (which are
// the stored records).
func TestPythonDecoderFollowingTheDocsAgrees(t *testing.T) {
	if err := exec.Command(testutil.Python, "-c", "import cbor2").Run(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("python3-cbor2 is missing (scripts/deps.sh installs it): %v", err)
		}
		t.Skipf("python3-cbor2 is missing (run scripts/deps.sh): %v", err)
	}
	payloads := statelessPayloads(t)
	refs, contexts := byReferencePayloads(t)
	payloads = append(payloads, refs...)
	payloads = append(payloads, docExamplePayloads(t, contexts)...)
	lookup := func(id uint32) (*CompactContext, bool) { c, ok := contexts[id]; return c, ok }

	dir := t.TempDir()
	args := []string{"../../docs/payloads.md"}
	for id, c := range contexts {
		file := filepath.Join(dir, fmtContextID(id)+".ctx")
		if err := os.WriteFile(file, c.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--context", file)
	}
	var want bytes.Buffer
	for _, p := range payloads {
		b, err := detectAndDecode(t, p.payload, lookup)
		if err != nil {
			t.Fatalf("%s: %v", p.name, err)
		}
		if err := b.WriteJSONLines(&want); err != nil {
			t.Fatal(err)
		}
		file := filepath.Join(dir, p.name)
		if err := os.WriteFile(file, p.payload, 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, file)
	}
	script, err := filepath.Abs(filepath.Join("testdata", "payload_decode.py"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(testutil.Python, append([]string{script}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	got, err := cmd.Output()
	if err != nil {
		t.Fatalf("payload_decode.py: %v\n%s", err, stderr.String())
	}
	if !bytes.Equal(got, want.Bytes()) {
		gl, wl := strings.Split(string(got), "\n"), strings.Split(want.String(), "\n")
		for i := range min(len(gl), len(wl)) {
			if gl[i] != wl[i] {
				t.Fatalf("line %d differs:\npython %s\ngo     %s", i+1, gl[i], wl[i])
			}
		}
		t.Fatalf("python printed %d lines, go %d", len(gl), len(wl))
	}
	t.Logf("%d payloads and %d contexts, %d lines agree", len(payloads), len(contexts), bytes.Count(got, []byte("\n")))
}

// statelessPayloads are the payloads of every stateless encoding (compact
// version 2 inline, cbor, cbor+deflate) and of compact version 1, raw and
// compressed, for edge-case, realistic and every-field batches.
func statelessPayloads(tb testing.TB) []pythonPayload {
	tb.Helper()
	batches := map[string][][]byte{
		"empty":        nil,
		"edge":         edgeCaseRecords(tb),
		"realistic6":   realisticRecords(tb, 6, 5),
		"realistic60":  realisticRecords(tb, 60, 6),
		"realistic500": realisticRecords(tb, 500, 7),
		"everyField":   marshalAll(tb, everyFieldReadings(tb)),
	}
	var payloads []pythonPayload
	for _, name := range sortedKeys(batches) {
		for _, encName := range []string{EncodingCompact, EncodingCBOR, EncodingCBORDeflate} {
			p, err := mustEncoder(tb, encName).Encode("gw-\"ü\"-1", batches[name])
			if err != nil {
				tb.Fatalf("%s %s: %v", name, encName, err)
			}
			payloads = append(payloads, pythonPayload{name + "." + strings.ReplaceAll(encName, "+", "-"), p})
		}
		raw, err := encodeCompact("gw-\"ü\"-1", batches[name])
		if err != nil {
			tb.Fatal(err)
		}
		v1, err := compressCompact(raw)
		if err != nil {
			tb.Fatal(err)
		}
		payloads = append(payloads, pythonPayload{name + ".compact-v1", v1}, pythonPayload{name + ".compact-v1-raw", raw})
	}
	return payloads
}

// docExamplePayloads are docs/payloads.md's version 2 examples (a first
// context, and a learned one with phases and a cycle); their contexts join
// contexts.
func docExamplePayloads(tb testing.TB, contexts map[uint32]*CompactContext) []pythonPayload {
	tb.Helper()
	const doc = "../../docs/payloads.md"
	var out []pythonPayload
	for _, ex := range [][2]string{{"compact2-context-hex", "compact2-example-hex"}, {"compact2-learned-context-hex", "compact2-learned-hex"}} {
		docCtx, err := hex.DecodeString(strings.TrimSpace(testutil.DocBlock(tb, doc, ex[0])))
		if err != nil {
			tb.Fatal(err)
		}
		docBatch, err := hex.DecodeString(strings.TrimSpace(testutil.DocBlock(tb, doc, ex[1])))
		if err != nil {
			tb.Fatal(err)
		}
		c, err := ParseCompactContext(docCtx)
		if err != nil {
			tb.Fatal(err)
		}
		contexts[c.ID()] = c
		out = append(out, pythonPayload{"doc-" + ex[1], docBatch})
	}
	return out
}

// detectAndDecode decodes a payload of the encoding its first bytes name,
// compact ones with the contexts given.
func detectAndDecode(tb testing.TB, p []byte, contexts func(uint32) (*CompactContext, bool)) (Batch, error) {
	tb.Helper()
	name, err := DetectEncoding(p)
	if err != nil {
		return Batch{}, err
	}
	if name == EncodingCompact {
		return DecodeCompact(p, contexts)
	}
	return mustEncoder(tb, name).Decode(p)
}

// byReferencePayloads runs a ContextEncoder over batches that exercise the
// version 2 rules: a context made from the edge cases (units, unicode tags,
// big numbers, object values, client ids of every form, a ts going
// backwards), batches that reference it, with readings it does not
// describe (a new sensor, another unit, no tags), until a second context
// replaces it; and the one- and four-sensor generators a month apart. It
// returns the payloads and every context they reference.
func byReferencePayloads(tb testing.TB) ([]pythonPayload, map[uint32]*CompactContext) {
	tb.Helper()
	clock := time.Date(2026, 12, 6, 4, 0, 0, 0, time.UTC)
	e := NewContextEncoder(ContextOptions{MinRebuild: time.Hour, Now: func() time.Time { return clock }})
	contexts := map[uint32]*CompactContext{}
	var out []pythonPayload
	add := func(name string, e *ContextEncoder, records [][]byte) {
		p, c, err := e.Encode("gw-\"ü\"-1", records)
		if err != nil {
			tb.Fatalf("%s: %v", name, err)
		}
		contexts[c.ID()] = c
		out = append(out, pythonPayload{name, p})
	}
	edge := edgeCaseRecords(tb)
	add("ref-edge-0", e, edge)
	misfit := append(slices.Clone(edge), marshalAll(tb, []Reading{
		{ID: "client-8", Sensor: "new.sensor", TS: clock.Add(time.Second), Value: json.Number("1.25"), Unit: "kPa", Tags: map[string]string{"site": "Zürich ☃", "line": "4"}},
		{ID: "client-9", Sensor: "new.sensor", TS: clock.Add(2 * time.Second), Value: json.Number("1.5"), Unit: "kPa", Tags: map[string]string{"site": "Zürich ☃", "line": "4"}},
		{ID: "client-10", Sensor: "t1", TS: clock.Add(3 * time.Second), Value: json.Number("-12.3"), Unit: "K"},
	})...)
	for i := range 4 {
		clock = clock.Add(time.Hour)
		add(fmt.Sprintf("ref-misfit-%d", i), e, misfit)
	}
	if len(contexts) != 2 {
		tb.Fatalf("%d contexts, want the first and the one the misfits made", len(contexts))
	}
	one := newOneSensorGen(tb, 3)
	e1 := NewContextEncoder(ContextOptions{Now: func() time.Time { return one.at }})
	add("ref-one-first", e1, one.next(tb, 6))
	for i := range 20 {
		add(fmt.Sprintf("ref-one-learn-%d", i), e1, one.next(tb, 6))
	}
	one.skip(23 * time.Hour)
	add("ref-one-day", e1, one.next(tb, 6))
	one.skip(2 * time.Hour)
	add("ref-one-refreshed", e1, one.next(tb, 6))
	four := newFourSensorGen(tb, 3)
	e4 := NewContextEncoder(ContextOptions{Now: func() time.Time { return four.ts }})
	early := four.next(tb, 5)
	add("ref-four-first", e4, four.next(tb, 6))
	// Batches of 5 start at every sensor of the cycle in turn.
	for i := range 70 {
		add(fmt.Sprintf("ref-four-learn-%d", i), e4, four.next(tb, 5))
	}
	four.skip(23 * time.Hour)
	add("ref-four-day", e4, four.next(tb, 30))
	add("ref-four-before-t0", e4, early)
	rs := four.next(tb, 8)
	rs[1], rs[6] = rs[6], rs[1]
	add("ref-four-off-cycle", e4, rs)
	four.skip(25*time.Hour + 3*time.Second)
	add("ref-four-late", e4, four.next(tb, 7))
	learned := 0
	for _, c := range contexts {
		if len(c.cycle) > 0 && slices.ContainsFunc(c.sensors, func(s contextSensor) bool { return s.hasPhase }) {
			learned++
		}
	}
	if learned == 0 {
		tb.Fatal("no context with a cycle and phases: the payloads do not exercise them")
	}
	return out, contexts
}
