package atkit

import (
	"fmt"
	"strings"

	"github.com/cellgate/cellgate/sdk/at"
)

// Field returns the value after prefix (e.g. "+CSQ:") in the first response
// line that has it, trimmed, with the spacing after ':' and ',' normalised
// as by at.Normalize.
func Field(r *at.Response, prefix string) (string, bool) {
	for _, l := range r.Lines {
		if v, ok := strings.CutPrefix(at.Normalize(l), at.Normalize(prefix)); ok {
			return strings.TrimSpace(v), true
		}
	}
	return "", false
}

// FirstLine returns the first non-blank response line, trimmed ("" if none):
// the answer of commands such as AT+CGMM or AT+CGSN.
func FirstLine(r *at.Response) string {
	for _, l := range r.Lines {
		if l = strings.TrimSpace(l); l != "" {
			return l
		}
	}
	return ""
}

// Fields splits a comma-separated value such as `0,"cgca.pem",1` into its
// parameters, each trimmed of blanks and of its double quotes. AT strings
// have no escapes, so a quoted comma is not expected.
func Fields(v string) []string {
	parts := strings.Split(v, ",")
	for i := range parts {
		parts[i] = strings.Trim(strings.TrimSpace(parts[i]), `"`)
	}
	return parts
}

// CheckString returns an error naming the byte offset when s cannot be sent
// inside an AT string parameter: AT strings have no escapes, so a double
// quote or a control character cannot be sent at all.
func CheckString(s string) error {
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] < 0x20 || s[i] == 0x7f {
			return fmt.Errorf("byte %d of %q cannot be sent in an AT string", i, s)
		}
	}
	return nil
}

// Quote renders s as an AT string parameter. Check s with CheckString first
// when it comes from outside the driver.
func Quote(s string) string { return `"` + s + `"` }
