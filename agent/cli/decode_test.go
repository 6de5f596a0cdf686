package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cellgate/cellgate/agent/reading"
)

// decodeRecords are stored readings for the decode tests: agent ids, a
// client id, a unit, tags, a negative decimal, a big integer.
func decodeRecords(t *testing.T) [][]byte {
	t.Helper()
	body := `[{"sensor":"t1","value":21.5,"unit":"°C","tags":{"site":"plant-7"}},
		{"sensor":"t1","value":21.6,"unit":"°C","tags":{"site":"plant-7"}},
		{"sensor":"h1","value":-0.25},
		{"id":"client-7","sensor":"big","value":123456789012345678901234567890},
		{"sensor":"door","value":true,"ts":"2026-12-06T03:59:59.999Z"}]`
	rs, err := reading.Parse([]byte(body), time.Date(2026, 12, 6, 4, 0, 0, 0, time.UTC), reading.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	out := make([][]byte, len(rs))
	for i, r := range rs {
		if out[i], err = r.MarshalJSON(); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// TestDecodePrintsEveryEncodingAsJSONLines decodes the same batch in each
// encoding, told by the payload's first bytes, by --encoding and by
// --content-type, from a file and from standard input, and requires the
// documented lines: the device id and each stored record byte for byte.
func TestDecodePrintsEveryEncodingAsJSONLines(t *testing.T) {
	records := decodeRecords(t)
	var want strings.Builder
	for _, rec := range records {
		want.WriteString(`{"device_id":"gw-0001","reading":` + string(rec) + "}\n")
	}
	dir := t.TempDir()
	for _, name := range []string{"json", "cbor", "cbor+deflate", "compact"} {
		enc, err := reading.NewEncoder(name)
		if err != nil {
			t.Fatal(err)
		}
		p, err := enc.Encode("gw-0001", records)
		if err != nil {
			t.Fatal(err)
		}
		file := filepath.Join(dir, strings.ReplaceAll(name, "+", "-")+".bin")
		if err := os.WriteFile(file, p, 0o600); err != nil {
			t.Fatal(err)
		}
		for _, args := range [][]string{
			{"decode", file},
			{"decode", "--encoding", name, file},
			{"decode", "--content-type", enc.ContentType(), "--content-encoding", enc.ContentEncoding(), file},
		} {
			code, out, errOut := cellgate(t, "", args...)
			if code != 0 || out != want.String() {
				t.Errorf("cellgate %s: exit %d, stderr %q\n got %s\nwant %s", strings.Join(args, " "), code, errOut, out, want.String())
			}
		}
		code, out, errOut := cellgate(t, string(p), "decode", "-")
		if code != 0 || out != want.String() {
			t.Errorf("%s on standard input: exit %d, stderr %q, out %s", name, code, errOut, out)
		}
	}
}

// TestDecodeNamesTheByteOffsetOfAProblem feeds damaged compact payloads and
// requires exit 1 with the offset named, and exit 2 for misuse.
func TestDecodeNamesTheByteOffsetOfAProblem(t *testing.T) {
	raw := []byte{0x8a, 0x01, 0x67, 'g', 'w', '-', '0', '0', '0', '1', 0x80, 0x00, 0x81, 0x05}
	for _, tc := range []struct {
		name, payload, want string
	}{
		{"truncated before the ts column", string(raw), "at byte 14 (ts): unexpected EOF"},
		{"wrong version", "\x8a\x03\xf6\xf6\xf6\xf6\xf6\xf6\xf6\xf6\xf6", "at byte 1 (version)"},
		{"count beyond the payload", "\x8a\x01", "at byte 0 (batch array): array of 10 elements cannot fit in the 1 bytes left"},
		{"not a payload", "\x00\x01", "byte 0 is 0x00"},
		{"index out of the dictionary", string(slices.Concat(raw[:12], []byte{0x81, 0x05, 0x81, 0x00, 0x81, 0x01, 0x81, 0x00, 0xf6, 0xf6})), "at byte 13 (sensor): 5 is not an index into the 0 strings"},
	} {
		code, _, errOut := cellgate(t, tc.payload, "decode", "--encoding", "compact")
		if code != 1 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%s: exit %d, stderr %q, want exit 1 naming %q", tc.name, code, errOut, tc.want)
		}
	}
	for _, args := range [][]string{
		{"decode", "--encoding", "xml"},
		{"decode", "--encoding", "cbor", "--content-type", "application/cbor"},
		{"decode", "--content-encoding", "deflate"},
		{"decode", "a", "b"},
	} {
		if code, _, errOut := cellgate(t, "", args...); code != 2 {
			t.Errorf("cellgate %s: exit %d, want 2; stderr %q", strings.Join(args, " "), code, errOut)
		}
	}
	code, out, _ := cellgate(t, "", "decode", "--help")
	if code != 0 || !strings.Contains(out, "cellgate decode [--encoding NAME") {
		t.Errorf("decode --help: exit %d, out %q", code, out)
	}
}

// TestDecodeWithContextFiles decodes compact version 2 batches that
// reference their contexts, given as files with --context (repeatable, in
// any order), and requires the stored records back; without the context
// it exits 1 naming its id, and a damaged context file exits 1 naming the
// file and the byte.
func TestDecodeWithContextFiles(t *testing.T) {
	records := decodeRecords(t)
	dir := t.TempDir()
	e := reading.NewContextEncoder(reading.ContextOptions{})
	p, ctx, err := e.Encode("gw-0001", records)
	if err != nil {
		t.Fatal(err)
	}
	other, otherCtx, err := reading.NewContextEncoder(reading.ContextOptions{}).Encode("gw-0002", records[:2])
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte) string {
		file := filepath.Join(dir, name)
		if err := os.WriteFile(file, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return file
	}
	batch, ctxFile := write("batch.bin", p), write("ctx.bin", ctx.Bytes())
	otherFile := write("other-ctx.bin", otherCtx.Bytes())
	var want strings.Builder
	for _, rec := range records {
		want.WriteString(`{"device_id":"gw-0001","reading":` + string(rec) + "}\n")
	}
	for _, args := range [][]string{
		{"decode", "--context", ctxFile, batch},
		{"decode", "--context", otherFile, "--context", ctxFile, batch},
		{"decode", "--context", ctxFile, "--encoding", "compact", batch},
		{"decode", "--context", ctxFile, "--content-type", reading.ContentTypeCompact, batch},
	} {
		code, out, errOut := cellgate(t, "", args...)
		if code != 0 || out != want.String() {
			t.Errorf("cellgate %s: exit %d, stderr %q\n got %s\nwant %s", strings.Join(args, " "), code, errOut, out, want.String())
		}
	}
	code, out, _ := cellgate(t, string(other), "decode", "--context", otherFile, "-")
	if code != 0 || strings.Count(out, `"device_id":"gw-0002"`) != 2 {
		t.Errorf("the other device's batch on standard input: exit %d, out %s", code, out)
	}
	damaged := ctx.Bytes()
	damaged[1] = 0x05 // context version 5
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"decode", batch}, fmt.Sprintf("context %s is not known", ctx.HexID())},
		{[]string{"decode", "--context", otherFile, batch}, fmt.Sprintf("context %08x is not known", ctx.ID())},
		{[]string{"decode", "--context", write("damaged.bin", damaged), batch}, "damaged.bin: reading: parse compact context: at byte 1 (context version): 5, want 1"},
		{[]string{"decode", "--context", filepath.Join(dir, "absent.bin"), batch}, "absent.bin: no such file"},
		{[]string{"decode", "--context", batch, batch}, "batch.bin: reading: parse compact context: at byte 1 (context"},
	} {
		code, _, errOut := cellgate(t, "", tc.args...)
		if code != 1 || !strings.Contains(errOut, tc.want) {
			t.Errorf("cellgate %s: exit %d, stderr %q, want exit 1 naming %q", strings.Join(tc.args, " "), code, errOut, tc.want)
		}
	}
}
