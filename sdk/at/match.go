package at

import (
	"strconv"
	"strings"
)

// normalize removes the spaces that follow ':' or ',' so that prefixes and
// lines can be compared regardless of a firmware's spacing habits.
func normalize(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	skip := false
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if skip && ch == ' ' {
			continue
		}
		skip = ch == ':' || ch == ','
		b.WriteByte(ch)
	}
	return b.String()
}

// matchNormalized reports whether line starts with the normalized prefix np,
// ignoring spaces in line that follow ':' or ','. It returns the index in
// line just after the matched prefix (and after any spaces that follow a
// trailing ':' or ',').
func matchNormalized(line, np string) (int, bool) {
	j := 0
	skip := false
	i := 0
	for ; i < len(line) && j < len(np); i++ {
		ch := line[i]
		if skip && ch == ' ' {
			continue
		}
		if ch != np[j] {
			return 0, false
		}
		j++
		skip = ch == ':' || ch == ','
	}
	if j != len(np) {
		return 0, false
	}
	for skip && i < len(line) && line[i] == ' ' {
		i++
	}
	return i, true
}

// Normalize returns line without the spaces that follow ':' or ',', the
// form in which this package compares prefixes. Drivers parsing response
// lines use it so "+CCHOPEN: 0, 15" and "+CCHOPEN:0,15" read the same.
func Normalize(line string) string { return normalize(line) }

// Prefix returns a matcher for Expect that accepts lines starting with p.
// Matching is case-sensitive and tolerant of spacing: spaces after ':' and
// ',' are ignored in both p and the line, so Prefix("+CCHOPEN: 0,") accepts
// "+CCHOPEN: 0,0", "+CCHOPEN:0,0" and "+CCHOPEN:  0, 0".
func Prefix(p string) func(line string) bool {
	np := normalize(p)
	return func(line string) bool {
		_, ok := matchNormalized(line, np)
		return ok
	}
}

// cchRecvHeader is the normalized form of the auto-receive data header.
const cchRecvHeader = "+CCHRECV:DATA,"

// maxLengthDigits bounds the digits accepted in an announced length so the
// conversion cannot overflow; the cap (WithMaxBinary) applies afterwards.
const maxLengthDigits = 9

// CCHRecvLength parses a SIMCom data header "+CCHRECV: DATA,<id>,<len>"
// (spacing after ':' and ',' optional) and returns <len>. It returns false
// for any other line, including a header whose id or length is not a plain
// decimal number, so such a line is routed as an ordinary line. Use it with
// HandleBinary.
func CCHRecvLength(line string) (int, bool) {
	i, ok := matchNormalized(line, cchRecvHeader)
	if !ok {
		return 0, false
	}
	id, length, ok := strings.Cut(line[i:], ",")
	if !ok {
		return 0, false
	}
	id = strings.TrimSpace(id)
	length = strings.TrimSpace(length)
	if !isDigits(id) || !isDigits(length) || len(length) > maxLengthDigits {
		return 0, false
	}
	n, err := strconv.Atoi(length)
	if err != nil {
		return 0, false
	}
	return n, true
}
