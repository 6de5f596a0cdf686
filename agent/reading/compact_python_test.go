package reading

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
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

// TestPythonDecoderFollowingTheDocsAgrees decodes compact, cbor and
// cbor+deflate payloads with testdata/payload_decode.py, a decoder written
// from docs/payloads.md alone on Python's cbor2, and requires its JSON lines
// to equal the Go decoder's byte for byte (which are the stored records).
func TestPythonDecoderFollowingTheDocsAgrees(t *testing.T) {
	if err := exec.Command(testutil.Python, "-c", "import cbor2").Run(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("python3-cbor2 is missing (scripts/deps.sh installs it): %v", err)
		}
		t.Skipf("python3-cbor2 is missing (run scripts/deps.sh): %v", err)
	}
	batches := map[string][][]byte{
		"empty":        nil,
		"edge":         edgeCaseRecords(t),
		"realistic6":   realisticRecords(t, 6, 5),
		"realistic60":  realisticRecords(t, 60, 6),
		"realistic500": realisticRecords(t, 500, 7),
		"everyField":   marshalAll(t, everyFieldReadings(t)),
	}
	dir := t.TempDir()
	var files []string
	var want bytes.Buffer
	for _, name := range sortedKeys(batches) {
		for _, encName := range []string{EncodingCompact, EncodingCBOR, EncodingCBORDeflate} {
			enc := mustEncoder(t, encName)
			p, err := enc.Encode("gw-\"ü\"-1", batches[name])
			if err != nil {
				t.Fatalf("%s %s: %v", name, encName, err)
			}
			b, err := enc.Decode(p)
			if err != nil {
				t.Fatalf("%s %s: %v", name, encName, err)
			}
			if err := b.WriteJSONLines(&want); err != nil {
				t.Fatal(err)
			}
			file := filepath.Join(dir, fmt.Sprintf("%s.%s", name, strings.ReplaceAll(encName, "+", "-")))
			if err := os.WriteFile(file, p, 0o600); err != nil {
				t.Fatal(err)
			}
			files = append(files, file)
		}
	}
	script, err := filepath.Abs(filepath.Join("testdata", "payload_decode.py"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(testutil.Python, append([]string{script, "../../docs/payloads.md"}, files...)...)
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
	t.Logf("%d payloads, %d lines agree", len(files), bytes.Count(got, []byte("\n")))
}
