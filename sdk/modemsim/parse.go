package modemsim

import (
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"unicode/utf8"
)

// cmdForm is the syntactic form of one AT command (V.250 §5.3).
type cmdForm int

const (
	formExec cmdForm = iota // AT+CMD
	formRead                // AT+CMD?
	formTest                // AT+CMD=?
	formSet                 // AT+CMD=<args>
)

// atCommand is one command of a command line, e.g. "+CCHOPEN" with its
// raw argument text, or the basic command "E" with value "0".
type atCommand struct {
	name  string // upper case: "+CCHOPEN", "E", "I", "&F"; "" for a bare "AT"
	form  cmdForm
	args  string // formSet: the text after '='; basic commands: the digits
	basic bool
}

// counterName is the key under which Counters.Commands counts c.
func (c atCommand) counterName() string {
	return "AT" + c.name
}

var errSyntax = errors.New("syntax error")

// splitCommandLine splits the text after the "AT" prefix into commands:
// extended commands separated by ';' (quotes respected), basic commands
// (a letter or '&'+letter, optional digits) concatenated as V.250 allows.
func splitCommandLine(body string) ([]atCommand, error) {
	var cmds []atCommand
	i := 0
	for i < len(body) {
		c := body[i]
		switch {
		case c == ' ' || c == ';':
			i++
		case c == '+' || c == '$' || c == '^':
			j := i + 1
			for j < len(body) && isNameChar(body[j]) {
				j++
			}
			if j == i+1 {
				return nil, errSyntax
			}
			cmd := atCommand{name: strings.ToUpper(body[i:j])}
			switch {
			case strings.HasPrefix(body[j:], "=?"):
				cmd.form = formTest
				j += 2
			case strings.HasPrefix(body[j:], "?"):
				cmd.form = formRead
				j++
			case strings.HasPrefix(body[j:], "="):
				cmd.form = formSet
				j++
				k, err := scanToSemicolon(body, j)
				if err != nil {
					return nil, err
				}
				cmd.args = body[j:k]
				j = k
			default:
				cmd.form = formExec
			}
			// Only spaces may sit between a command and the next ';'.
			for j < len(body) && body[j] == ' ' {
				j++
			}
			if j < len(body) && body[j] != ';' {
				return nil, errSyntax
			}
			cmds = append(cmds, cmd)
			i = j
		case isLetter(c) || c == '&':
			j := i + 1
			if c == '&' {
				if j >= len(body) || !isLetter(body[j]) {
					return nil, errSyntax
				}
				j++
			}
			name := strings.ToUpper(body[i:j])
			k := j
			for k < len(body) && body[k] >= '0' && body[k] <= '9' {
				k++
			}
			cmd := atCommand{name: name, args: body[j:k], basic: true, form: formExec}
			if k < len(body) && body[k] == '?' {
				cmd.form = formRead
				k++
			}
			cmds = append(cmds, cmd)
			i = k
		default:
			return nil, errSyntax
		}
	}
	return cmds, nil
}

func isLetter(c byte) bool { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') }

func isNameChar(c byte) bool {
	return isLetter(c) || (c >= '0' && c <= '9') || c == '_'
}

// scanToSemicolon returns the index of the first ';' at or after i that is
// outside a quoted string, or len(s).
func scanToSemicolon(s string, i int) (int, error) {
	inQuote := false
	for ; i < len(s); i++ {
		switch s[i] {
		case '"':
			inQuote = !inQuote
		case ';':
			if !inQuote {
				return i, nil
			}
		}
	}
	if inQuote {
		return 0, errSyntax
	}
	return len(s), nil
}

// atArg is one parameter of a set command.
type atArg struct {
	text    string // unquoted value; for {non-ascii} names the decoded UTF-8
	quoted  bool
	present bool // false for an omitted parameter (",,")
}

// parseArgs splits a parameter list at commas outside quotes. Spaces around
// unquoted values and around quoted strings are ignored, as the vendor
// examples ("AT+CCHOPEN=0,\"host\", 443,2") rely on. A string prefixed with
// {non-ascii} carries the hex of a UTF-8 name (AT+CCERTDOWN).
func parseArgs(s string) ([]atArg, error) {
	var args []atArg
	i := 0
	for {
		for i < len(s) && s[i] == ' ' {
			i++
		}
		var a atArg
		const nonASCII = "{non-ascii}"
		hexName := false
		if len(s)-i >= len(nonASCII) && strings.EqualFold(s[i:i+len(nonASCII)], nonASCII) {
			hexName = true
			i += len(nonASCII)
		}
		if i < len(s) && s[i] == '"' {
			end := strings.IndexByte(s[i+1:], '"')
			if end < 0 {
				return nil, errSyntax
			}
			a = atArg{text: s[i+1 : i+1+end], quoted: true, present: true}
			i += end + 2
			for i < len(s) && s[i] == ' ' {
				i++
			}
			if hexName {
				b, err := hex.DecodeString(a.text)
				if err != nil || !utf8.Valid(b) {
					return nil, errSyntax
				}
				a.text = string(b)
			}
		} else {
			if hexName {
				return nil, errSyntax
			}
			j := strings.IndexByte(s[i:], ',')
			if j < 0 {
				j = len(s) - i
			}
			v := strings.TrimSpace(s[i : i+j])
			if strings.ContainsRune(v, '"') {
				return nil, errSyntax
			}
			a = atArg{text: v, present: v != ""}
			i += j
		}
		args = append(args, a)
		if i >= len(s) {
			return args, nil
		}
		if s[i] != ',' {
			return nil, errSyntax
		}
		i++
	}
}

// intIn parses an unquoted decimal parameter and checks lo <= v <= hi.
func intIn(a atArg, lo, hi int) (int, bool) {
	if !a.present || a.quoted || !allDigits(a.text) || len(a.text) > 9 {
		return 0, false
	}
	v, err := strconv.Atoi(a.text)
	if err != nil || v < lo || v > hi {
		return 0, false
	}
	return v, true
}

// oneOf parses an unquoted decimal parameter that must be in set.
func oneOf(a atArg, set ...int) (int, bool) {
	v, ok := intIn(a, 0, 1<<30)
	if !ok {
		return 0, false
	}
	for _, s := range set {
		if v == s {
			return v, true
		}
	}
	return 0, false
}

// quotedString returns a quoted parameter whose byte length is within
// [lo, hi].
func quotedString(a atArg, lo, hi int) (string, bool) {
	if !a.present || !a.quoted || len(a.text) < lo || len(a.text) > hi {
		return "", false
	}
	return a.text, true
}

// findATPrefix returns the command text after the first "AT" (any case) of
// a line; ok is false when the line holds no AT prefix, which a module
// ignores silently.
func findATPrefix(line string) (string, bool) {
	for i := 0; i+1 < len(line); i++ {
		if (line[i] == 'A' || line[i] == 'a') && (line[i+1] == 'T' || line[i+1] == 't') {
			return line[i+2:], true
		}
	}
	return "", false
}
