package transcript

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Side is one end of the line.
type Side int

const (
	// Host is the driver's end of the line.
	Host Side = iota + 1
	// Modem is the modem's end of the line.
	Modem
)

func (s Side) String() string {
	switch s {
	case Host:
		return "host"
	case Modem:
		return "modem"
	}
	return "Side(" + strconv.Itoa(int(s)) + ")"
}

// other returns the opposite end of the line.
func (s Side) other() Side {
	if s == Host {
		return Modem
	}
	return Host
}

// Kind is what a step does.
type Kind int

const (
	// Comment is a comment or a blank line, kept so that a parsed
	// transcript can be written back; players skip it.
	Comment Kind = iota + 1
	// HostLine is "> text": the host sends text and CR.
	HostLine
	// HostBytes is ">> \"…\"": the host sends exactly these bytes.
	HostBytes
	// ModemLine is "< text": the modem sends text, CR and LF.
	ModemLine
	// ModemBytes is "<< \"…\"": the modem sends exactly these bytes.
	ModemBytes
	// ModemData is "<data header \"payload\"": the modem sends a counted
	// binary frame.
	ModemData
	// Pause is "~ duration".
	Pause
	// Hangup is "hangup": the side being played closes the line.
	Hangup
	// End is "end": the other side must send nothing more.
	End
	// Action is "@name arguments", a step for the harness.
	Action
)

var kindNames = map[Kind]string{
	Comment: "comment", HostLine: ">", HostBytes: ">>", ModemLine: "<", ModemBytes: "<<",
	ModemData: "<data", Pause: "~", Hangup: "hangup", End: "end", Action: "@",
}

// directiveKinds reads kindNames backwards for parseStep. Comments and
// actions are left out: they have a syntax of their own.
var directiveKinds = func() map[string]Kind {
	m := map[string]Kind{}
	for k, name := range kindNames {
		if k != Comment && k != Action {
			m[name] = k
		}
	}
	return m
}()

func (k Kind) String() string {
	if n, ok := kindNames[k]; ok {
		return n
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// Pos is where a step was written.
type Pos struct {
	File string
	Line int
}

func (p Pos) String() string { return p.File + ":" + strconv.Itoa(p.Line) }

// Step is one line of a transcript.
type Step struct {
	Pos  Pos
	Kind Kind
	// Text is the text of a HostLine or ModemLine (without CR LF), the
	// header of a ModemData with {len} in place, the arguments of an
	// Action, a Pause's duration as written, or the whole line of a
	// Comment.
	Text string
	// Name is an Action's name, without the '@'.
	Name string
	// Bytes is what one instance of a wire step puts on the line,
	// terminators and frame included.
	Bytes []byte
	// Payload is a ModemData's payload.
	Payload []byte
	// Repeat is how many times in a row a wire step is played (at least 1).
	Repeat int
	// Pause is a Pause step's duration.
	Pause time.Duration
}

// Side says which end of the line sends a wire step's bytes; it is zero for
// steps that put nothing on the line.
func (s Step) Side() Side {
	switch s.Kind {
	case HostLine, HostBytes:
		return Host
	case ModemLine, ModemBytes, ModemData:
		return Modem
	}
	return 0
}

// String renders the step as a transcript line. Parse reads the line back
// to the same step (bar its position) for every step Parse or Split made,
// except that ${NAME} in it is expanded again.
func (s Step) String() string {
	rep := ""
	if s.Repeat > 1 {
		rep = "*" + strconv.Itoa(s.Repeat)
	}
	switch s.Kind {
	case Comment:
		return s.Text
	case HostLine, ModemLine:
		if s.Text == "" {
			return s.Kind.String() + rep
		}
		return s.Kind.String() + rep + " " + s.Text
	case HostBytes, ModemBytes:
		return s.Kind.String() + rep + " " + strconv.Quote(string(s.Bytes))
	case ModemData:
		return "<data" + rep + " " + s.Text + " " + strconv.Quote(string(s.Payload))
	case Pause:
		if s.Text != "" {
			return "~ " + s.Text
		}
		return "~ " + s.Pause.String()
	case Hangup, End:
		return s.Kind.String()
	case Action:
		if s.Text == "" {
			return "@" + s.Name
		}
		return "@" + s.Name + " " + s.Text
	}
	return s.Kind.String()
}

// Transcript is a parsed transcript: its steps in order, includes inlined.
type Transcript struct {
	Steps []Step
}

// String renders the transcript as text, one step per line.
func (t *Transcript) String() string {
	var b strings.Builder
	for _, s := range t.Steps {
		b.WriteString(s.String())
		b.WriteByte('\n')
	}
	return b.String()
}

// Error is a problem at one step of a transcript: a syntax error while
// parsing, or a deviation or I/O failure while playing.
type Error struct {
	Pos Pos
	Err error
}

func (e *Error) Error() string { return e.Pos.String() + ": " + e.Err.Error() }

func (e *Error) Unwrap() error { return e.Err }

// lenMark is where a data header holds its payload's length.
const lenMark = "{len}"

var varRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// ParseFile reads the transcript at path. See Parse.
func ParseFile(path string, vars map[string]string) (*Transcript, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, src, vars)
}

// Parse reads a transcript from src. name is the file name used in
// positions and errors; includes are read from the file system, relative to
// its directory. ${NAME} references are replaced by vars[NAME]; a name that
// is not in vars (any name, when vars is nil) is an error. The error, if
// any, is an [*Error] naming the file and line at fault.
func Parse(name string, src []byte, vars map[string]string) (*Transcript, error) {
	p := &parser{vars: vars}
	steps, err := p.parse(name, src, nil)
	if err != nil {
		return nil, err
	}
	if err := check(steps); err != nil {
		return nil, err
	}
	return &Transcript{Steps: steps}, nil
}

type parser struct {
	vars map[string]string
}

func (p *parser) parse(name string, src []byte, stack []string) ([]Step, error) {
	if !utf8.Valid(src) {
		return nil, &Error{Pos{name, 1}, errors.New("not UTF-8 text (write bytes as Go-quoted strings)")}
	}
	text := strings.ReplaceAll(string(src), "\r\n", "\n")
	text = strings.TrimSuffix(text, "\n")
	var steps []Step
	for i, raw := range strings.Split(text, "\n") {
		pos := Pos{name, i + 1}
		bad := func(format string, a ...any) error {
			return &Error{pos, fmt.Errorf(format, a...)}
		}
		trimmed := strings.TrimSpace(raw)
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			steps = append(steps, Step{Pos: pos, Kind: Comment, Text: trimmed})
			continue
		}
		line, err := p.expand(raw)
		if err != nil {
			return nil, bad("%v", err)
		}
		word, arg, _ := strings.Cut(strings.TrimLeft(line, " \t"), " ")
		arg = strings.TrimRight(arg, " \t")
		if word == "include" {
			if arg == "" {
				return nil, bad("include needs a file name")
			}
			inc := filepath.Join(filepath.Dir(name), arg)
			for _, s := range stack {
				if s == inc {
					return nil, bad("include cycle: %s includes itself", inc)
				}
			}
			src, err := os.ReadFile(inc)
			if err != nil {
				return nil, bad("include: %v", err)
			}
			sub, err := p.parse(inc, src, append(stack, name))
			if err != nil {
				return nil, err
			}
			steps = append(steps, sub...)
			continue
		}
		st, err := parseStep(word, arg)
		if err != nil {
			return nil, bad("%v", err)
		}
		st.Pos = pos
		steps = append(steps, st)
	}
	return steps, nil
}

// expand replaces ${NAME} references.
func (p *parser) expand(line string) (string, error) {
	var missing string
	out := varRef.ReplaceAllStringFunc(line, func(ref string) string {
		name := varRef.FindStringSubmatch(ref)[1]
		v, ok := p.vars[name]
		if !ok && missing == "" {
			missing = name
		}
		return v
	})
	if missing != "" {
		return "", fmt.Errorf("undefined variable ${%s}", missing)
	}
	return out, nil
}

// parseStep reads one directive line other than comments and includes.
func parseStep(word, arg string) (Step, error) {
	if name, ok := strings.CutPrefix(word, "@"); ok {
		if name == "" {
			return Step{}, errors.New("an action needs a name: @name [arguments]")
		}
		return Step{Kind: Action, Name: name, Text: arg}, nil
	}
	dir, count, hasCount := strings.Cut(word, "*")
	kind, ok := directiveKinds[dir]
	if !ok {
		return Step{}, fmt.Errorf("unknown directive %q (want >, >>, <, <<, <data, ~, hangup, end, include or @action)", word)
	}
	st := Step{Kind: kind}
	if st.Side() != 0 {
		st.Repeat = 1
	}
	if hasCount {
		if st.Side() == 0 {
			return Step{}, fmt.Errorf("%s cannot repeat", dir)
		}
		n, err := strconv.Atoi(count)
		if err != nil || n < 1 {
			return Step{}, fmt.Errorf("repeat count %q is not a whole number of at least 1", count)
		}
		st.Repeat = n
	}
	switch st.Kind {
	case HostLine, ModemLine:
		st.Text = arg
		term := "\r"
		if st.Kind == ModemLine {
			term = "\r\n"
		}
		st.Bytes = []byte(arg + term)
	case HostBytes, ModemBytes:
		b, err := unquote(arg)
		if err != nil {
			return Step{}, fmt.Errorf("%s wants one Go-quoted string: %v", dir, err)
		}
		if len(b) == 0 {
			return Step{}, fmt.Errorf("%s with no bytes", dir)
		}
		st.Bytes = []byte(b)
	case ModemData:
		header, payload, err := splitData(arg)
		if err != nil {
			return Step{}, err
		}
		st.Text, st.Payload = header, []byte(payload)
		filled := strings.Replace(header, lenMark, strconv.Itoa(len(payload)), 1)
		st.Bytes = []byte("\r\n" + filled + "\r\n" + payload)
	case Pause:
		d, err := time.ParseDuration(arg)
		if err != nil || d <= 0 {
			return Step{}, fmt.Errorf("~ wants a duration greater than zero such as 300ms, not %q", arg)
		}
		st.Pause, st.Text = d, arg
	case Hangup, End:
		if arg != "" {
			return Step{}, fmt.Errorf("%s takes no argument", dir)
		}
	}
	return st, nil
}

// unquote reads exactly one Go string literal.
func unquote(s string) (string, error) {
	if s == "" || (s[0] != '"' && s[0] != '`') {
		return "", fmt.Errorf("%q is not a string literal", s)
	}
	return strconv.Unquote(s)
}

// splitData splits "<header> <quoted payload>". The payload is the
// leftmost quote-started token that reads as one string literal to the end
// of the line, so a header may hold quotes of its own.
func splitData(arg string) (header, payload string, err error) {
	for i := 0; i < len(arg); i++ {
		if (arg[i] != '"' && arg[i] != '`') || i == 0 || arg[i-1] != ' ' {
			continue
		}
		p, err := strconv.Unquote(arg[i:])
		if err != nil {
			continue
		}
		header = strings.TrimRight(arg[:i], " \t")
		if n := strings.Count(header, lenMark); n != 1 {
			return "", "", fmt.Errorf("<data header %q must hold %s exactly once, where the payload length goes", header, lenMark)
		}
		return header, p, nil
	}
	return "", "", fmt.Errorf("<data wants a header with %s and a Go-quoted payload, as in <data +CCHRECV: DATA,0,%s \"abc\"", lenMark, lenMark)
}

// check enforces the order rules: nothing but comments after end, and no
// bytes on a line after it was hung up.
func check(steps []Step) error {
	var ended, hung *Step
	for i := range steps {
		s := &steps[i]
		if s.Kind == Comment {
			continue
		}
		if ended != nil {
			return &Error{s.Pos, fmt.Errorf("%s after end (at %s)", s.Kind, ended.Pos)}
		}
		if hung != nil && (s.Side() != 0 || s.Kind == Hangup || s.Kind == End) {
			return &Error{s.Pos, fmt.Errorf("%s after hangup (at %s): the line is closed", s.Kind, hung.Pos)}
		}
		switch s.Kind {
		case End:
			ended = s
		case Hangup:
			hung = s
		}
	}
	return nil
}
