package at

import (
	"errors"
	"strconv"
	"strings"
)

// ErrClosed is returned (possibly wrapped) by every call that waits on a
// Channel whose reader has stopped, whether because Close was called or
// because reading from the port failed; in the latter case the error also
// wraps the read error, so errors.Is(err, io.EOF) works.
var ErrClosed = errors.New("at: channel closed")

// ErrError is matched by errors.Is for every final result in which the modem
// rejected a command: *Error (ERROR, NO CARRIER, CONNECT FAIL, ...),
// *CMEError and *CMSError. Use errors.As to get the modem's words.
var ErrError = errors.New("at: modem rejected the command")

// ErrNoPrompt is returned by CommandPayload when the modem answers OK (or
// another successful final result) without first sending the prompt: ">",
// or the line given with WithPromptLine. The payload was not written.
var ErrNoPrompt = errors.New("at: modem answered without the prompt; payload not sent")

// ErrWaiterCanceled is returned by Waiter.Wait after Waiter.Cancel, unless a
// line had already been consumed by the waiter.
var ErrWaiterCanceled = errors.New("at: waiter canceled")

// Error is a final result without a code: ERROR, NO CARRIER, CONNECT FAIL,
// BUSY, NO ANSWER or NO DIALTONE. errors.Is(err, ErrError) is true.
type Error struct {
	// Cmd is the command as sent, without the terminator.
	Cmd string
	// Final is the final result line as the modem sent it.
	Final string
}

// Error names the command and the modem's words, e.g. "AT+CCHSEND=1,5: ERROR".
func (e *Error) Error() string { return e.Cmd + ": " + e.Final }

// Is reports whether target is ErrError.
func (e *Error) Is(target error) bool { return target == ErrError }

// CMEError is a "+CME ERROR: <n|text>" final result (3GPP TS 27.007 §9.2).
// errors.Is(err, ErrError) is true.
type CMEError struct {
	// Cmd is the command as sent, without the terminator.
	Cmd string
	// Code is the numeric code, or -1 when the modem answered with text
	// (AT+CMEE=2).
	Code int
	// Text is the modem's words; for a numeric code it is the meaning from
	// the 27.007 table, or empty for a code not in the table.
	Text string
}

// Error names the command and the modem's words, e.g.
// "AT+CPIN?: +CME ERROR: SIM busy" or "AT+CPIN?: +CME ERROR: 10 (SIM not inserted)".
func (e *CMEError) Error() string { return codedError(e.Cmd, "+CME ERROR: ", e.Code, e.Text) }

// Is reports whether target is ErrError.
func (e *CMEError) Is(target error) bool { return target == ErrError }

// CMSError is a "+CMS ERROR: <n|text>" final result (3GPP TS 27.005 §3.2.5).
// errors.Is(err, ErrError) is true.
type CMSError struct {
	// Cmd is the command as sent, without the terminator.
	Cmd string
	// Code is the numeric code, or -1 when the modem answered with text.
	Code int
	// Text is the modem's words; for a numeric code it is the meaning from
	// the 27.005 table, or empty for a code not in the table.
	Text string
}

// Error names the command and the modem's words, e.g.
// "AT+CMGS=5: +CMS ERROR: 302 (operation not allowed)".
func (e *CMSError) Error() string { return codedError(e.Cmd, "+CMS ERROR: ", e.Code, e.Text) }

// Is reports whether target is ErrError.
func (e *CMSError) Is(target error) bool { return target == ErrError }

func codedError(cmd, tag string, code int, text string) string {
	switch {
	case code < 0:
		return cmd + ": " + tag + text
	case text == "":
		return cmd + ": " + tag + strconv.Itoa(code)
	default:
		return cmd + ": " + tag + strconv.Itoa(code) + " (" + text + ")"
	}
}

// IsSIMBusy reports whether err is (or wraps) a +CME ERROR with code 14 or
// the text "SIM busy" (any case), or a +CMS ERROR 314: what a SIMCom module
// answers while the SIM is still initialising after boot. Callers retry.
func IsSIMBusy(err error) bool {
	var cme *CMEError
	if errors.As(err, &cme) {
		return cme.Code == 14 || strings.EqualFold(strings.TrimSpace(cme.Text), "SIM busy")
	}
	var cms *CMSError
	if errors.As(err, &cms) {
		return cms.Code == 314 || strings.EqualFold(strings.TrimSpace(cms.Text), "SIM busy")
	}
	return false
}

// cmeText holds the common +CME ERROR codes of 3GPP TS 27.007 §9.2.
var cmeText = map[int]string{
	0:   "phone failure",
	1:   "no connection to phone",
	2:   "phone-adaptor link reserved",
	3:   "operation not allowed",
	4:   "operation not supported",
	5:   "PH-SIM PIN required",
	6:   "PH-FSIM PIN required",
	7:   "PH-FSIM PUK required",
	10:  "SIM not inserted",
	11:  "SIM PIN required",
	12:  "SIM PUK required",
	13:  "SIM failure",
	14:  "SIM busy",
	15:  "SIM wrong",
	16:  "incorrect password",
	17:  "SIM PIN2 required",
	18:  "SIM PUK2 required",
	20:  "memory full",
	21:  "invalid index",
	22:  "not found",
	23:  "memory failure",
	24:  "text string too long",
	25:  "invalid characters in text string",
	26:  "dial string too long",
	27:  "invalid characters in dial string",
	30:  "no network service",
	31:  "network timeout",
	32:  "network not allowed - emergency calls only",
	40:  "network personalization PIN required",
	41:  "network personalization PUK required",
	42:  "network subset personalization PIN required",
	43:  "network subset personalization PUK required",
	44:  "service provider personalization PIN required",
	45:  "service provider personalization PUK required",
	46:  "corporate personalization PIN required",
	47:  "corporate personalization PUK required",
	100: "unknown",
	103: "illegal MS",
	106: "illegal ME",
	107: "GPRS services not allowed",
	111: "PLMN not allowed",
	112: "location area not allowed",
	113: "roaming not allowed in this location area",
	132: "service option not supported",
	133: "requested service option not subscribed",
	134: "service option temporarily out of order",
	148: "unspecified GPRS error",
	149: "PDP authentication failure",
	150: "invalid mobile class",
}

// cmsText holds the common +CMS ERROR codes of 3GPP TS 27.005 §3.2.5.
var cmsText = map[int]string{
	300: "ME failure",
	301: "SMS service of ME reserved",
	302: "operation not allowed",
	303: "operation not supported",
	304: "invalid PDU mode parameter",
	305: "invalid text mode parameter",
	310: "SIM not inserted",
	311: "SIM PIN required",
	312: "PH-SIM PIN required",
	313: "SIM failure",
	314: "SIM busy",
	315: "SIM wrong",
	316: "SIM PUK required",
	317: "SIM PIN2 required",
	318: "SIM PUK2 required",
	320: "memory failure",
	321: "invalid memory index",
	322: "memory full",
	330: "SMSC address unknown",
	331: "no network service",
	332: "network timeout",
	340: "no +CNMA acknowledgement expected",
	500: "unknown error",
}

// finalKind classifies a line that ends a command.
type finalKind uint8

const (
	notFinal finalKind = iota
	finalOK
	finalConnect // CONNECT [<text>]: success; the channel has no data mode
	finalFailed  // ERROR, NO CARRIER, CONNECT FAIL, BUSY, NO ANSWER, NO DIALTONE
	finalCME
	finalCMS
)

// classifyFinal reports whether line is a final result code (V.250 §5.7.2
// plus the 27.007/27.005 error forms).
func classifyFinal(line string) finalKind {
	t := strings.TrimSpace(line)
	switch t {
	case "OK":
		return finalOK
	case "ERROR", "NO CARRIER", "CONNECT FAIL", "BUSY", "NO ANSWER", "NO DIALTONE":
		return finalFailed
	case "CONNECT":
		return finalConnect
	}
	if strings.HasPrefix(t, "CONNECT ") {
		return finalConnect
	}
	if strings.HasPrefix(t, "+CME ERROR:") {
		return finalCME
	}
	if strings.HasPrefix(t, "+CMS ERROR:") {
		return finalCMS
	}
	return notFinal
}

// finalError builds the error for a final result line of the given kind, or
// nil for a success.
func finalError(cmd, line string, kind finalKind) error {
	t := strings.TrimSpace(line)
	switch kind {
	case finalFailed:
		return &Error{Cmd: cmd, Final: t}
	case finalCME:
		code, text := parseCode(strings.TrimPrefix(t, "+CME ERROR:"), cmeText)
		return &CMEError{Cmd: cmd, Code: code, Text: text}
	case finalCMS:
		code, text := parseCode(strings.TrimPrefix(t, "+CMS ERROR:"), cmsText)
		return &CMSError{Cmd: cmd, Code: code, Text: text}
	}
	return nil
}

// parseCode reads the part after "+CME ERROR:": digits give a code whose text
// comes from table; anything else is the modem's own text with code -1.
func parseCode(s string, table map[int]string) (int, string) {
	s = strings.TrimSpace(s)
	if s != "" && len(s) <= 6 && isDigits(s) {
		n, _ := strconv.Atoi(s)
		return n, table[n]
	}
	return -1, s
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return len(s) > 0
}

// stoppedError is returned to a call that found the reader stopped. It
// matches ErrClosed and, after a read failure, the read error.
type stoppedError struct {
	what    string // the command or wait that was interrupted
	readErr error  // nil when the channel was closed with Close
}

func (e *stoppedError) Error() string {
	if e.readErr == nil {
		return "at: " + e.what + ": channel closed"
	}
	return "at: " + e.what + ": channel stopped: reading from the port: " + e.readErr.Error()
}

func (e *stoppedError) Unwrap() []error {
	if e.readErr == nil {
		return []error{ErrClosed}
	}
	return []error{ErrClosed, e.readErr}
}
