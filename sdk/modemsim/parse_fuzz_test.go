package modemsim

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// FuzzCommandLine runs the emulator's command-line parser over any line a
// host might type: findATPrefix, splitCommandLine, and parseArgs with the
// parameter checks on every set command's arguments. None may panic or
// loop; a refusal is always errSyntax; every command has an upper-case name
// of the shape V.250 gives it (basic: a letter or '&' and a letter, digits
// as its value; extended: '+', '$' or '^' and name characters); and the
// commands written back as one canonical line parse to the same commands.
func FuzzCommandLine(f *testing.F) {
	for _, s := range []string{
		"AT",
		"ATE0",
		"ate0v1&f",
		"AT+CSQ",
		"AT+CPIN?",
		"AT+CGDCONT=?",
		`AT+CGDCONT=1,"IP","internet"`,
		`AT+CCHOPEN=0,"broker.example.com", 8883,2`,
		`AT+CCERTDOWN={non-ascii}"6361",1200`,
		`AT+CSSLCFG="cacert",0,"ca.pem";+CSSLCFG="sslversion",0,4`,
		`AT+CCHSEND=0,5;E1`,
		"AT+CMEE=2;+CGMR;I",
		`AT+X="a;b",,3`,
		`AT+X="unterminated`,
		"AT+=1",
		"xyzAT+CSQ",
		"AT&",
		"AT+CSQ x",
		"AT+CCHRECV=0,99999999999",
		"AT$QCRMCALL=1,1",
		"AT^SYSINFO",
		"AT Z ; E0?",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		body, ok := findATPrefix(line)
		if !ok {
			return
		}
		if !strings.HasSuffix(line, body) || len(body)+2 > len(line) || !strings.EqualFold(line[len(line)-len(body)-2:len(line)-len(body)], "AT") {
			t.Fatalf("findATPrefix(%q) = %q, which does not follow an AT", line, body)
		}
		cmds, err := splitCommandLine(body)
		if err != nil {
			if !errors.Is(err, errSyntax) {
				t.Fatalf("splitCommandLine(%q): %v, want errSyntax", body, err)
			}
			return
		}
		for _, c := range cmds {
			checkCommandShape(t, body, c)
			if c.form == formSet {
				checkArgs(t, c)
			}
		}
		again, err := splitCommandLine(writeCommands(cmds))
		if err != nil || !reflect.DeepEqual(again, cmds) {
			t.Fatalf("%q parsed to %+v; written back as %q it parses to %+v (%v)", body, cmds, writeCommands(cmds), again, err)
		}
	})
}

// checkCommandShape fails t unless c is named and shaped as V.250 says.
func checkCommandShape(t *testing.T, body string, c atCommand) {
	t.Helper()
	if c.name != strings.ToUpper(c.name) {
		t.Fatalf("%q: command name %q is not upper case", body, c.name)
	}
	if c.basic {
		name := strings.TrimPrefix(c.name, "&")
		if len(name) != 1 || !isLetter(name[0]) || strings.Trim(c.args, "0123456789") != "" || (c.form != formExec && c.form != formRead) {
			t.Fatalf("%q: basic command %+v is malformed", body, c)
		}
		return
	}
	if len(c.name) < 2 || !strings.ContainsRune("+$^", rune(c.name[0])) || strings.IndexFunc(c.name[1:], func(r rune) bool { return r > 0x7f || !isNameChar(byte(r)) }) >= 0 {
		t.Fatalf("%q: extended command name %q is malformed", body, c.name)
	}
	if c.form != formSet && c.args != "" {
		t.Fatalf("%q: %+v has arguments without '='", body, c)
	}
}

// checkArgs parses a set command's arguments and runs the parameter checks
// the handlers use on each; only errSyntax may come back.
func checkArgs(t *testing.T, c atCommand) {
	t.Helper()
	args, err := parseArgs(c.args)
	if err != nil {
		if !errors.Is(err, errSyntax) {
			t.Fatalf("parseArgs(%q): %v, want errSyntax", c.args, err)
		}
		return
	}
	for _, a := range args {
		if !a.quoted && (a.text != strings.TrimSpace(a.text) || strings.ContainsRune(a.text, '"')) {
			t.Fatalf("parseArgs(%q): unquoted argument %q keeps spaces or a quote", c.args, a.text)
		}
		if !a.present && (a.text != "" || a.quoted) {
			t.Fatalf("parseArgs(%q): an omitted argument holds %+v", c.args, a)
		}
		if v, ok := intIn(a, 0, 1<<30); ok && (v < 0 || v > 1<<30) {
			t.Fatalf("intIn(%+v) = %d, out of its range", a, v)
		}
		oneOf(a, 0, 1, 2)
		if s, ok := quotedString(a, 1, 8); ok && (len(s) < 1 || len(s) > 8) {
			t.Fatalf("quotedString(%+v) = %q, out of its length range", a, s)
		}
	}
}

// writeCommands writes commands back as one canonical command line body.
func writeCommands(cmds []atCommand) string {
	parts := make([]string, len(cmds))
	for i, c := range cmds {
		s := c.name
		switch {
		case c.basic:
			s += c.args
			if c.form == formRead {
				s += "?"
			}
		case c.form == formRead:
			s += "?"
		case c.form == formTest:
			s += "=?"
		case c.form == formSet:
			s += "=" + c.args
		}
		parts[i] = s
	}
	return strings.Join(parts, ";")
}
