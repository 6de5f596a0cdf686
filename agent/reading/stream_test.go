package reading

import (
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"
)

// chunkReader serves data in reads of at most size bytes, as a network
// body arrives.
type chunkReader struct {
	data []byte
	size int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), c.size)], c.data)
	c.data = c.data[n:]
	return n, nil
}

// decodeAll runs a Decoder with reproducible ids over body served in
// chunks of size bytes, and returns its readings, or its error.
func decodeAll(t testing.TB, body []byte, size int, lim Limits) ([]Reading, error) {
	t.Helper()
	d := NewDecoder(&chunkReader{data: body, size: size}, parseNow, lim)
	d.p.ids = testIDs(t)
	var out []Reading
	for {
		r, err := d.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			if again, err2 := d.Next(); err2 != err || !reflect.DeepEqual(again, Reading{}) {
				t.Fatalf("Next after %v = %v, %v; want the same error again", err, again, err2)
			}
			return nil, err
		}
		out = append(out, r)
	}
}

var parseNow = time.Date(2024, 11, 27, 4, 0, 0, 0, time.UTC)

// FuzzDecoderMatchesParse checks, for any body served in any chunk size,
// that a Decoder accepts exactly what Parse accepts and gives the same
// readings, and that its errors are *ParseError (the reader never fails
// here). The first input byte picks the chunk size and, with its high bit,
// small limits so that the limit paths are met too.
func FuzzDecoderMatchesParse(f *testing.F) {
	for _, seed := range []string{
		"\x00" + `{"sensor":"t1","value":21.5,"unit":"C"}`,
		"\x01" + `[{"id":"a","sensor":"t1","ts":"2024-11-27T04:00:00.123+02:00","value":{"a":[1,null,"x"]},"tags":{"k":"v"}},{"sensor":"b","ts":0,"value":true}]`,
		"\x02" + ` [ {"sensor":"s","value":"}]{[\"\\"} , {"sensor":"t","value":{"k":"]"}} ] `,
		"\x83" + `[{"sensor":"a","value":1},{"sensor":"b","value":2},{"sensor":"c","value":3}]`,
		"\x84" + `{"sensor":"a","value":"` + strings.Repeat("x", 300) + `"}`,
		"\x05" + `[{"sensor":"t1","value":1},,]`,
		"\x06" + `[{"sensor":"t1","value":1}] x`,
		"\x07" + `[{"sensor":"t1","value":1]`,
		"\x00" + `{"sensor":"t1","value":{"a":]}}`,
		"\x01" + `[]`,
		"\x02" + `[1]`,
		"\x03" + `"x"`,
		"\x04" + "[{\"sensor\":\"\xff\",\"value\":1}]",
		"\x00" + ``,
		"\x00" + `[`,
		"\x00" + `[{"sensor":"t1","value":1},`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, input []byte) {
		if len(input) == 0 {
			return
		}
		mode, body := input[0], input[1:]
		size := int(mode&0x3f) + 1
		var lim Limits
		if mode&0x80 != 0 {
			lim = Limits{MaxReadings: 2, MaxReadingBytes: 64}
		}
		want, perr := ParseWithIDs(body, parseNow, lim, testIDs(t))
		got, derr := decodeAll(t, body, size, lim)
		if (perr == nil) != (derr == nil) {
			t.Fatalf("Parse: %v; Decoder: %v", perr, derr)
		}
		if derr != nil {
			var pe *ParseError
			if !errors.As(derr, &pe) {
				t.Fatalf("Decoder error %v is %T, not *ParseError", derr, derr)
			}
			return
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("Decoder gave\n%#v\nParse gave\n%#v", got, want)
		}
	})
}

// Where both can see the whole problem, the Decoder names it as Parse
// does: same reading, field, words and body offset.
func TestDecoderErrorsMatchParse(t *testing.T) {
	for _, body := range []string{
		``,
		`  `,
		`[]`,
		`[ ]`,
		`[`,
		`[{"sensor":"t1","value":1},`,
		`[{"sensor":"t1","value":1},,]`,
		`[{"sensor":"t1","value":1}}`,
		`[{"sensor":"t1","value":1} x`,
		`[{"sensor":"t1","value":1}] x`,
		`{"sensor":"t1","value":1} {}`,
		`[{"sensor":"t1","value":1}, 7]`,
		`[{"sensor":"t1","value":1},{"sensor":"t2"}]`,
		`[{"sensor":"t1","value":1},{"sensor":"t2","value":1,"tags":{"a":2}}]`,
		`{"sensor":"t1","value":{"a":]}}`,
		`{"sensor":"t1","value":"abc`,
		`{"sensor":"t1","value":1,"x":1}`,
		`x`,
	} {
		_, want := ParseWithIDs([]byte(body), parseNow, Limits{}, testIDs(t))
		_, got := decodeAll(t, []byte(body), 3, Limits{})
		if want == nil || got == nil {
			t.Errorf("%q: Parse %v, Decoder %v; want both to fail", body, want, got)
			continue
		}
		if *got.(*ParseError) != *want.(*ParseError) {
			t.Errorf("%q:\nDecoder %#v\nParse   %#v", body, got, want)
		}
	}
}

// endless serves a prefix, then filler forever, counting what it served.
type endless struct {
	prefix string
	filler byte
	served int
}

func (e *endless) Read(p []byte) (int, error) {
	n := copy(p, e.prefix)
	e.prefix = e.prefix[n:]
	for i := n; i < len(p); i++ {
		p[i] = e.filler
	}
	e.served += len(p)
	return len(p), nil
}

// A reading growing past its limit is refused at once: the Decoder does
// not read on to the end of it, however long it is.
func TestDecoderRefusesAnOversizedReadingAsSoonAsItPassesTheLimit(t *testing.T) {
	src := &endless{prefix: `[{"sensor":"t1","value":1},{"sensor":"t2","value":"`, filler: 'x'}
	d := NewDecoder(src, parseNow, Limits{MaxReadingBytes: 1000})
	if _, err := d.Next(); err != nil {
		t.Fatal(err)
	}
	_, err := d.Next()
	var pe *ParseError
	if !errors.As(err, &pe) || pe.Index != 1 || pe.Offset != 27 || !strings.Contains(pe.Problem, "more than 1000 bytes") {
		t.Fatalf("Next = %v (%#v), want reading 1 refused for its size at offset 27", err, pe)
	}
	if src.served > 1000+2*decoderWindow {
		t.Errorf("read %d bytes of an endless reading before refusing it", src.served)
	}
}

type failingReader struct{ err error }

func (f failingReader) Read([]byte) (int, error) { return 0, f.err }

// The reader's own error comes back wrapped, not as a *ParseError.
func TestDecoderReturnsTheReadersError(t *testing.T) {
	cause := errors.New("connection reset")
	for _, r := range []io.Reader{
		failingReader{cause},
		io.MultiReader(strings.NewReader(`[{"sensor":"t1","value":1},{"sen`), failingReader{cause}),
		io.MultiReader(strings.NewReader(`[{"sensor":"t1","value":1}`), failingReader{cause}),
		io.MultiReader(strings.NewReader(`{"sensor":"t1","value":1}  `), failingReader{cause}),
	} {
		d := NewDecoder(r, parseNow, Limits{})
		var err error
		for err == nil {
			_, err = d.Next()
		}
		var pe *ParseError
		if !errors.Is(err, cause) || errors.As(err, &pe) {
			t.Errorf("Next = %v, want the reader's error", err)
		}
	}
}

// Reset reuses a Decoder for another body.
func TestDecoderReset(t *testing.T) {
	d := NewDecoder(strings.NewReader(`x`), parseNow, Limits{})
	if _, err := d.Next(); err == nil {
		t.Fatal("accepted x")
	}
	d.Reset(strings.NewReader(`[{"sensor":"t1","value":1}]`), parseNow)
	if r, err := d.Next(); err != nil || r.Sensor != "t1" {
		t.Fatalf("after Reset: %v, %v", r, err)
	}
	if _, err := d.Next(); err != io.EOF {
		t.Fatalf("after the last reading: %v, want io.EOF", err)
	}
}
