package transcript

import (
	"bytes"
	"regexp"
	"strings"
	"testing"
)

var cchRecv = regexp.MustCompile(`^\+CCHRECV: ?DATA, ?\d+, ?(?P<len>\d+)$`)

func TestSplitWritesTheMostReadableSteps(t *testing.T) {
	for _, tc := range []struct {
		name string
		side Side
		in   string
		want string
	}{
		{"command", Host, "AT+CSQ\r", "> AT+CSQ"},
		{"payload", Host, "hello\r\nOK", `>> "hello\r\nOK"`},
		{"echo and response", Modem, "AT+CSQ\r\r\n+CSQ: 20,99\r\n\r\nOK\r\n",
			"<< \"AT+CSQ\\r\"\n<\n< +CSQ: 20,99\n<\n< OK"},
		{"prompt", Modem, "\r\n> ", "<\n<< \"> \""},
		{"trailing blank stays quoted", Modem, "\r\nOK \r\n", "<\n<< \"OK \"\n<"},
		{"stray byte before a line", Modem, "\x00OK\r\n", "<< \"\\x00\"\n< OK"},
		{"frame", Modem, "\r\nOK\r\n\r\n+CCHRECV: DATA,1,8\r\nab\r\nOK\r\n\r\n+CCHRECV: 1,0\r\n",
			"<\n< OK\n<data +CCHRECV: DATA,1,{len} \"ab\\r\\nOK\\r\\n\"\n<\n< +CCHRECV: 1,0"},
		{"frame cut short is lines", Modem, "\r\n+CCHRECV: DATA,0,9\r\nabc",
			"<\n< +CCHRECV: DATA,0,9\n<< \"abc\""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := &Transcript{Steps: Split(tc.side, []byte(tc.in), cchRecv)}
			if got := strings.TrimSuffix(tr.String(), "\n"); got != tc.want {
				t.Errorf("got\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
}

func TestSplitWithoutLenGroupPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("Split accepted a data pattern without a len group")
		}
	}()
	Split(Modem, []byte("x"), regexp.MustCompile(`^\+CCHRECV: DATA,\d+,\d+$`))
}

// FuzzSplitReadsBackToTheSameBytes: whatever a side sent, Split's steps,
// written out and parsed again, put exactly those bytes on the line.
func FuzzSplitReadsBackToTheSameBytes(f *testing.F) {
	for _, s := range []string{
		"AT\r\r\nOK\r\n", "\r\n+CCHRECV: DATA,0,3\r\na\r\n\r\nOK\r\n", "\r\n>", "x\ty\r\n", "\xff\r\n",
		"\r\n+CCHRECV: DATA,0,0\r\n", "# not a comment\r\n", "  \r\n", "é\r\n",
	} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, in string, host bool) {
		if in == "" || strings.Contains(in, "${") {
			return // nothing to send; variables are expanded on parse
		}
		side := Modem
		if host {
			side = Host
		}
		text := (&Transcript{Steps: Split(side, []byte(in), cchRecv)}).String()
		tr, err := Parse("split.txt", []byte(text), nil)
		if err != nil {
			t.Fatalf("Split wrote what Parse refuses: %v\n%s", err, text)
		}
		var got []byte
		for _, s := range tr.Steps {
			if s.Side() != side {
				t.Fatalf("step %s is not the %s's", s, side)
			}
			got = append(got, bytes.Repeat(s.Bytes, s.Repeat)...)
		}
		if string(got) != in {
			t.Fatalf("bytes %q came back as %q via\n%s", in, got, text)
		}
	})
}
