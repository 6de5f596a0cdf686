package transcript

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// every is a transcript with one of each directive.
const every = `# bring-up
> AT+CSQ

<
< +CSQ: 20,99
<< "\r\n> "
>> "hello\x00"
<data +CCHRECV: DATA,0,{len} "ab\r\nOK"
<data +QIURC: "recv",1,{len} "x"
<*3 OK
>>*2 "ab"
~ 1500ms
@result
@expect open +CCHOPEN: 0,
hangup
@stopped
`

func TestParseReadsEveryDirective(t *testing.T) {
	tr, err := Parse("every.txt", []byte(every), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []Step{
		{Kind: Comment, Text: "# bring-up"},
		{Kind: HostLine, Text: "AT+CSQ", Bytes: []byte("AT+CSQ\r"), Repeat: 1},
		{Kind: Comment},
		{Kind: ModemLine, Bytes: []byte("\r\n"), Repeat: 1},
		{Kind: ModemLine, Text: "+CSQ: 20,99", Bytes: []byte("+CSQ: 20,99\r\n"), Repeat: 1},
		{Kind: ModemBytes, Bytes: []byte("\r\n> "), Repeat: 1},
		{Kind: HostBytes, Bytes: []byte("hello\x00"), Repeat: 1},
		{Kind: ModemData, Text: "+CCHRECV: DATA,0,{len}", Payload: []byte("ab\r\nOK"), Bytes: []byte("\r\n+CCHRECV: DATA,0,6\r\nab\r\nOK"), Repeat: 1},
		{Kind: ModemData, Text: `+QIURC: "recv",1,{len}`, Payload: []byte("x"), Bytes: []byte("\r\n+QIURC: \"recv\",1,1\r\nx"), Repeat: 1},
		{Kind: ModemLine, Text: "OK", Bytes: []byte("OK\r\n"), Repeat: 3},
		{Kind: HostBytes, Bytes: []byte("ab"), Repeat: 2},
		{Kind: Pause, Text: "1500ms", Pause: 1500 * time.Millisecond},
		{Kind: Action, Name: "result"},
		{Kind: Action, Name: "expect", Text: "open +CCHOPEN: 0,"},
		{Kind: Hangup},
		{Kind: Action, Name: "stopped"},
	}
	if len(tr.Steps) != len(want) {
		t.Fatalf("%d steps, want %d:\n%s", len(tr.Steps), len(want), tr)
	}
	for i, got := range tr.Steps {
		if got.Pos != (Pos{"every.txt", i + 1}) {
			t.Errorf("step %d at %s, want every.txt:%d", i, got.Pos, i+1)
		}
		if !sameStep(got, want[i]) {
			t.Errorf("line %d: got %+v\nwant %+v", i+1, got, want[i])
		}
	}
}

func sameStep(a, b Step) bool {
	return a.Kind == b.Kind && a.Text == b.Text && a.Name == b.Name && string(a.Bytes) == string(b.Bytes) &&
		string(a.Payload) == string(b.Payload) && a.Repeat == b.Repeat && a.Pause == b.Pause
}

func TestStringReadsBackToTheSameSteps(t *testing.T) {
	tr, err := Parse("every.txt", []byte(every), nil)
	if err != nil {
		t.Fatal(err)
	}
	if tr.String() != every {
		t.Errorf("String() changed the text:\n%s", tr)
	}
	again, err := Parse("again.txt", []byte(tr.String()), nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range tr.Steps {
		if !sameStep(tr.Steps[i], again.Steps[i]) {
			t.Errorf("step %d: %+v became %+v", i, tr.Steps[i], again.Steps[i])
		}
	}
}

func TestTextLinesLoseTrailingBlanksOnly(t *testing.T) {
	tr, err := Parse("t.txt", []byte("<   spaced out \t\n  > AT \r\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(tr.Steps[0].Bytes); got != "  spaced out\r\n" {
		t.Errorf("modem line bytes %q", got)
	}
	if got := string(tr.Steps[1].Bytes); got != "AT\r" {
		t.Errorf("indented host line with CRLF file ending: bytes %q", got)
	}
}

func TestParseErrorsNameFileAndLine(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		line      int
		want      string
	}{
		{"unknown directive", "> AT\n=result\n", 2, `unknown directive "=result"`},
		{"bytes not quoted", "# c\n<< hello\n", 2, "<< wants one Go-quoted string"},
		{"bytes unterminated", `>> "abc`, 1, ">> wants one Go-quoted string"},
		{"bytes empty", `<< ""`, 1, "<< with no bytes"},
		{"data without len", `<data +X: 1 "ab"`, 1, "must hold {len} exactly once"},
		{"data with len twice", `<data +X: {len},{len} "ab"`, 1, "must hold {len} exactly once"},
		{"data without payload", "\n\n<data +X: {len}", 3, "wants a header with {len} and a Go-quoted payload"},
		{"pause not a duration", "~ soon", 1, "~ wants a duration"},
		{"pause not positive", "~ 0s", 1, "~ wants a duration"},
		{"repeat zero", "<*0 OK", 1, `repeat count "0"`},
		{"repeat not a number", "<*x OK", 1, `repeat count "x"`},
		{"pause cannot repeat", "~*2 1s", 1, "~ cannot repeat"},
		{"hangup with argument", "hangup now", 1, "hangup takes no argument"},
		{"step after end", "> AT\nend\n# fine\n< OK\n", 4, "< after end (at t.txt:2)"},
		{"bytes after hangup", "hangup\n@ok\n~ 1s\n< OK\n", 4, "< after hangup (at t.txt:1)"},
		{"end after hangup", "hangup\nend\n", 2, "end after hangup"},
		{"undefined variable", "> AT\n> AT+CCHOPEN=0,\"h\",${PORT},1\n", 2, "undefined variable ${PORT}"},
		{"action without name", "@ x", 1, "an action needs a name"},
		{"include without file", "include", 1, "include needs a file name"},
		{"include missing", "include nowhere.txt", 1, "include: open"},
		{"not UTF-8", "< \xff", 1, "not UTF-8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("t.txt", []byte(tc.src), nil)
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Parse = %v, want an *Error", err)
			}
			if e.Pos.File != "t.txt" || e.Pos.Line != tc.line {
				t.Errorf("error at %s, want t.txt:%d", e.Pos, tc.line)
			}
			prefix := e.Pos.String() + ": "
			if msg := err.Error(); !strings.HasPrefix(msg, prefix) || !strings.Contains(msg, tc.want) {
				t.Errorf("error %q, want %q and then %q", msg, prefix, tc.want)
			}
		})
	}
}

func TestIncludeInlinesStepsWithTheirOwnPositions(t *testing.T) {
	dir := t.TempDir()
	write := func(name, src string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	main := write("case.txt", "include shared/bringup.txt\n< OK\n")
	write("shared/bringup.txt", "# shared\n> AT\ninclude probe.txt\n")
	probe := write("shared/probe.txt", "> AT+CGMM\n")
	tr, err := ParseFile(main, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range tr.Steps {
		got = append(got, filepath.ToSlash(strings.TrimPrefix(s.Pos.String(), dir+string(filepath.Separator)))+" "+s.String())
	}
	want := []string{
		"shared/bringup.txt:1 # shared",
		"shared/bringup.txt:2 > AT",
		"shared/probe.txt:1 > AT+CGMM",
		"case.txt:2 < OK",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("steps:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// An error inside an included file names that file.
	write("shared/probe.txt", "> AT+CGMM\n<< oops\n")
	_, err = ParseFile(main, nil)
	var e *Error
	if !errors.As(err, &e) || e.Pos != (Pos{probe, 2}) {
		t.Errorf("error %v, want it at %s:2", err, probe)
	}

	write("shared/probe.txt", "include ../case.txt\n")
	_, err = ParseFile(main, nil)
	if !errors.As(err, &e) || e.Pos != (Pos{probe, 1}) || !strings.Contains(err.Error(), "include cycle") {
		t.Errorf("error %v, want an include cycle at %s:1", err, probe)
	}
}

func TestVariablesExpandBeforeBytesAreCounted(t *testing.T) {
	vars := map[string]string{"ECHO": "4242", "BODY": "hello"}
	src := "> AT+CCHOPEN=0,\"127.0.0.1\",${ECHO},1\n<data +CCHRECV: DATA,0,{len} \"${BODY}\"\n# ${NOT_EXPANDED}\n"
	tr, err := Parse("t.txt", []byte(src), vars)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(tr.Steps[0].Bytes); got != "AT+CCHOPEN=0,\"127.0.0.1\",4242,1\r" {
		t.Errorf("host line %q", got)
	}
	if got := string(tr.Steps[1].Bytes); got != "\r\n+CCHRECV: DATA,0,5\r\nhello" {
		t.Errorf("data frame %q", got)
	}
	if got := tr.Steps[2].Text; got != "# ${NOT_EXPANDED}" {
		t.Errorf("comment %q", got)
	}
	tr, err = Parse("t.txt", []byte(`<< "\x24{ECHO}"`), nil)
	if err != nil || string(tr.Steps[0].Bytes) != "${ECHO}" {
		t.Errorf("escaped dollar: %v, %q", err, tr.Steps[0].Bytes)
	}
}
