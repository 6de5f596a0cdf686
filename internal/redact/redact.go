// Package redact is the project's one rule for keeping credentials in URLs
// out of logs, errors and rendered configuration.
package redact

import (
	"net/url"
	"strings"
)

// Mark stands in for a secret.
const Mark = "<redacted>"

// secretQueryKeys are URL query parameters whose values are credentials,
// compared without regard to case.
var secretQueryKeys = []string{"token", "access_token", "auth", "key", "apikey", "api_key", "secret", "password", "sig", "signature"}

// placeholder survives URL encoding, unlike Mark, and is swapped for Mark
// in the rendered URL.
const placeholder = "REDACTEDMARK"

// URL is URLValue for a URL in text. Text that does not parse as a URL is
// returned whole as Mark when it could hold user information (it has an
// '@'), and unchanged otherwise.
func URL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		if strings.Contains(s, "@") {
			return Mark
		}
		return s
	}
	return URLValue(u)
}

// URLValue renders u with Mark in place of the password of its user
// information and of the values of credential-like query parameters. A
// query without such parameters is left as written: re-encoding sorts it,
// and an operator comparing URLs should see theirs unchanged. File paths
// and host names are not secrets and stay visible. u is not modified; nil
// renders as "".
func URLValue(u *url.URL) string {
	if u == nil {
		return ""
	}
	c := *u
	if _, ok := c.User.Password(); ok {
		c.User = url.UserPassword(c.User.Username(), placeholder)
	}
	if c.RawQuery != "" {
		q, hidden := c.Query(), false
		for name := range q {
			for _, secret := range secretQueryKeys {
				if strings.EqualFold(name, secret) {
					q[name], hidden = []string{placeholder}, true
				}
			}
		}
		if hidden {
			c.RawQuery = q.Encode()
		}
	}
	return strings.ReplaceAll(c.String(), placeholder, Mark)
}
