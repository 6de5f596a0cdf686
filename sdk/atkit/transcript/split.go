package transcript

import (
	"bytes"
	"fmt"
	"regexp"
	"strconv"
	"unicode"
	"unicode/utf8"
)

// Split turns bytes that side sent into the most readable steps that put
// exactly those bytes on the line, for a test that records a conversation
// and writes it as a transcript (t.String()).
//
// Host bytes that are a text line ending in CR become "> text", anything
// else ">> \"…\"". Modem bytes are cut into "< text" lines wherever CR LF
// ends clean text, with "<< \"…\"" for the rest (an echo's bare CR, a
// prompt). When data is not nil, it recognises the header of a counted
// binary frame; its subexpression named "len" must match the payload
// length. A frame "\r\n<header>\r\n<payload>" then becomes one "<data"
// step. Split panics if data has no subexpression named "len".
func Split(side Side, b []byte, data *regexp.Regexp) []Step {
	if side == Host {
		return splitHost(b)
	}
	lenGroup := -1
	if data != nil {
		lenGroup = data.SubexpIndex("len")
		if lenGroup < 0 {
			panic(fmt.Sprintf("transcript.Split: %v has no subexpression named len", data))
		}
	}
	var steps []Step
	var raw []byte
	flush := func() {
		if len(raw) > 0 {
			steps = append(steps, Step{Kind: ModemBytes, Bytes: raw, Repeat: 1})
			raw = nil
		}
	}
	for i := 0; i < len(b); {
		if st, n, ok := dataFrame(b[i:], data, lenGroup); ok {
			flush()
			steps = append(steps, st)
			i += n
			continue
		}
		j := bytes.Index(b[i:], []byte("\r\n"))
		if j < 0 {
			raw = append(raw, b[i:]...)
			break
		}
		// The longest clean tail of the bytes before CR LF is a line; what
		// precedes it (an echo's CR, a stray byte) stays quoted.
		end := i + j
		k := cleanTail(b[i:end])
		raw = append(raw, b[i:i+k]...)
		flush()
		text := string(b[i+k : end])
		steps = append(steps, Step{Kind: ModemLine, Text: text, Bytes: []byte(text + "\r\n"), Repeat: 1})
		i = end + 2
	}
	flush()
	return steps
}

func splitHost(b []byte) []Step {
	if len(b) == 0 {
		return nil
	}
	if text, ok := bytes.CutSuffix(b, []byte("\r")); ok && cleanText(text) {
		return []Step{{Kind: HostLine, Text: string(text), Bytes: bytes.Clone(b), Repeat: 1}}
	}
	return []Step{{Kind: HostBytes, Bytes: bytes.Clone(b), Repeat: 1}}
}

// dataFrame reads a counted frame at the start of b.
func dataFrame(b []byte, data *regexp.Regexp, lenGroup int) (Step, int, bool) {
	rest, ok := bytes.CutPrefix(b, []byte("\r\n"))
	if data == nil || !ok {
		return Step{}, 0, false
	}
	end := bytes.Index(rest, []byte("\r\n"))
	if end < 0 || !cleanText(rest[:end]) {
		return Step{}, 0, false
	}
	header := string(rest[:end])
	m := data.FindStringSubmatchIndex(header)
	if m == nil || m[2*lenGroup] < 0 {
		return Step{}, 0, false
	}
	n, err := strconv.Atoi(header[m[2*lenGroup]:m[2*lenGroup+1]])
	start := 2 + end + 2
	if err != nil || n < 0 || len(b) < start+n {
		return Step{}, 0, false
	}
	tmpl := header[:m[2*lenGroup]] + lenMark + header[m[2*lenGroup+1]:]
	if bytes.Count([]byte(tmpl), []byte(lenMark)) != 1 {
		return Step{}, 0, false
	}
	return Step{
		Kind: ModemData, Text: tmpl, Payload: bytes.Clone(b[start : start+n]),
		Bytes: bytes.Clone(b[:start+n]), Repeat: 1,
	}, start + n, true
}

// cleanTail returns the offset in b from which on b is clean text.
func cleanTail(b []byte) int {
	if bytes.HasSuffix(b, []byte(" ")) || bytes.HasSuffix(b, []byte("\t")) {
		return len(b)
	}
	k := len(b)
	for k > 0 {
		r, size := utf8.DecodeLastRune(b[:k])
		if (r == utf8.RuneError && size <= 1) || !unicode.IsPrint(r) {
			break
		}
		k -= size
	}
	return k
}

// cleanText says whether b reads back unchanged as the text of a line:
// printable UTF-8 with no trailing blanks, which the parser would trim.
func cleanText(b []byte) bool {
	if !utf8.Valid(b) || bytes.HasSuffix(b, []byte(" ")) || bytes.HasSuffix(b, []byte("\t")) {
		return false
	}
	for _, r := range string(b) {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}
