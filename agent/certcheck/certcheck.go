// Package certcheck checks, before anything starts, the files a cellgate
// configuration names: the CA, the client certificate and key, the key's
// password file, and the plugin binaries pinned by plugins.sha256.
//
// `cellgate config check` prints its Report, and `cellgate run` refuses to
// start on one with errors before it touches the modem. Every problem is
// found in one pass and named by its configuration key, so an operator
// fixes them all at once. The same checks validate a certificate the
// rotation receives (VerifyIssued).
package certcheck

import (
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/cellgate/cellgate/agent/config"
)

// Finding is one problem or warning, about the value of one key.
type Finding struct {
	// Key is the configuration key path, e.g. "tls.key" or
	// "plugins.sha256.sim7600".
	Key string `json:"key"`
	// Message says what is wrong, starting with the file it is about, and
	// how to fix it. It never holds key material or a password.
	Message string `json:"message"`
}

// String renders the finding as "key: message", the form config errors
// take.
func (f Finding) String() string { return f.Key + ": " + f.Message }

// Report is what Check found: Errors stop the agent, Warnings are for the
// operator's attention (a certificate inside tls.renew_before).
type Report struct {
	Errors   []Finding `json:"errors"`
	Warnings []Finding `json:"warnings"`
	// Cert is the parsed client certificate when it could be read, for a
	// caller that schedules a renewal; nil otherwise.
	Cert *x509.Certificate `json:"-"`
}

// OK reports whether the report has no errors.
func (r Report) OK() bool { return len(r.Errors) == 0 }

// Err returns nil when the report has no errors, and otherwise an *Error
// listing them all.
func (r Report) Err() error {
	if r.OK() {
		return nil
	}
	return &Error{Problems: r.Errors}
}

func (r *Report) fail(key, format string, args ...any) {
	r.Errors = append(r.Errors, Finding{Key: key, Message: fmt.Sprintf(format, args...)})
}

func (r *Report) warn(key, format string, args ...any) {
	r.Warnings = append(r.Warnings, Finding{Key: key, Message: fmt.Sprintf(format, args...)})
}

// Error is a Report's errors as one error, rendered like config.Errors:
//
//	certificates: 2 problems:
//	  tls.key: /etc/cellgate/client.key: mode 0644 is readable by group/others; ...
//	  plugins.sha256.sim7600: ...
type Error struct {
	Problems []Finding
}

// Error renders all problems, one per line, under a count.
func (e *Error) Error() string {
	return config.ProblemList("certificates", e.Problems, Finding.String)
}

// Options tune Check.
type Options struct {
	// Now is the time certificates are checked at; zero means time.Now().
	Now time.Time
	// Executable is the cellgate binary's path, for the plugin search path
	// when plugins.dir is empty (see PluginDirs).
	Executable string
	// SkipPlugins leaves the plugin checksums out (a caller that checks
	// them itself, as the plugin host does at every start).
	SkipPlugins bool
}

// Check checks everything cfg names and returns every problem it found.
// It reads the files but changes nothing. Problems with a key file are
// also problems for what depends on it: a key that cannot be read is not
// also reported as not matching the certificate.
func Check(cfg *config.Config, opts Options) Report {
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	var r Report
	t := cfg.TLS
	ca := r.certFile("tls.ca", t.CA, now)
	chain := r.certFile("tls.cert", t.Cert, now)
	if len(chain) > 0 {
		r.Cert = chain[0]
		r.validity(chain[0], now, t.RenewBefore)
		if len(ca) > 0 {
			if err := VerifyChain(chain, ca, now); err != nil {
				r.fail("tls.cert", "%s: %v", t.Cert, err)
			}
		}
	}
	if t.Key != "" {
		r.key(t, chain)
	}
	if !opts.SkipPlugins {
		r.plugins(cfg, opts.Executable)
	}
	return r
}

// certFile reads and parses a PEM certificate file; nil when path is
// empty or the file has problems (reported).
func (r *Report) certFile(key, path string, now time.Time) []*x509.Certificate {
	if path == "" {
		return nil
	}
	data, err := ReadFile(path, false, false)
	if err != nil {
		r.fail(key, "%v", err)
		return nil
	}
	certs, err := ParseCertificatesPEM(data)
	if err != nil {
		r.fail(key, "%s: %v", path, err)
		return nil
	}
	if key == "tls.ca" {
		for i, c := range certs {
			if now.After(c.NotAfter) {
				r.fail(key, "%s: certificate %d (%s) expired on %s", path, i+1, c.Subject, day(c.NotAfter))
			}
		}
	}
	return certs
}

// validity reports a client certificate outside its validity at now, and
// warns when it expires within renewBefore.
func (r *Report) validity(c *x509.Certificate, now time.Time, renewBefore time.Duration) {
	path := "tls.cert"
	switch left := c.NotAfter.Sub(now); {
	case now.Before(c.NotBefore):
		r.fail(path, "certificate %s is not valid before %s (check the clock, or wait)", c.Subject, day(c.NotBefore))
	case left < 0:
		r.fail(path, "certificate %s expired on %s; renew it", c.Subject, day(c.NotAfter))
	case left < renewBefore:
		r.warn(path, "certificate %s expires on %s, in %s: within tls.renew_before (%s); renew it", c.Subject, day(c.NotAfter), roundDays(left), roundDays(renewBefore))
	}
}

func day(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// roundDays renders d in days when it is at least two, else in hours or
// less, for people.
func roundDays(d time.Duration) string {
	if d >= 48*time.Hour {
		return fmt.Sprintf("%d days", int(d/(24*time.Hour)))
	}
	return d.Round(time.Minute).String()
}

// key checks tls.key and tls.key_password_file and that the key matches
// the certificate chain[0].
func (r *Report) key(t config.TLS, chain []*x509.Certificate) {
	data, err := ReadFile(t.Key, true, t.AllowReadableKey)
	if err != nil {
		r.fail("tls.key", "%v", err)
		return
	}
	var password string
	if t.KeyPasswordFile != "" {
		if password, err = ReadKeyPassword(t.KeyPasswordFile, t.AllowReadableKey); err != nil {
			r.fail("tls.key_password_file", "%v", err)
			return
		}
	}
	signer, err := ParsePrivateKeyPEM(data, password)
	if err != nil {
		var ke *KeyPasswordError
		switch {
		case errors.As(err, &ke) && ke.Missing:
			r.fail("tls.key", "%s: %v; set tls.key_password_file", t.Key, err)
		case ke != nil:
			r.fail("tls.key_password_file", "%s: does not decrypt tls.key (%s): %v", t.KeyPasswordFile, t.Key, err)
		default:
			r.fail("tls.key", "%s: %v", t.Key, err)
		}
		return
	}
	if len(chain) > 0 {
		if err := MatchKey(chain[0], signer.Public()); err != nil {
			r.fail("tls.key", "%s: %v (tls.cert: %s)", t.Key, err, t.Cert)
		}
	}
}

// JSON is the machine form of `cellgate config check --json`: whether the
// configuration and the files it names are good, and every error and
// warning with its key path. Config problems carry the file and line (or
// environment variable or flag) they came from.
type JSON struct {
	OK       bool          `json:"ok"`
	Errors   []JSONFinding `json:"errors"`
	Warnings []JSONFinding `json:"warnings"`
}

// JSONFinding is one entry of JSON.Errors or JSON.Warnings.
type JSONFinding struct {
	Key     string `json:"key"`
	Message string `json:"message"`
	File    string `json:"file,omitempty"`
	Line    int    `json:"line,omitempty"`
	Source  string `json:"source,omitempty"`
}

// NewJSON assembles the JSON form from what config.Load returned (its
// *config.Errors or another error, and its warnings) and, when the
// configuration loaded, the Report of Check.
func NewJSON(loadErr error, warnings []config.Warning, rep Report) JSON {
	out := JSON{Errors: []JSONFinding{}, Warnings: []JSONFinding{}}
	if loadErr != nil {
		if ce := (*config.Errors)(nil); errors.As(loadErr, &ce) {
			for _, p := range ce.Problems {
				out.Errors = append(out.Errors, JSONFinding{Key: p.Path, Message: p.Problem, File: p.File, Line: p.Line, Source: p.Source})
			}
		} else {
			out.Errors = append(out.Errors, JSONFinding{Message: loadErr.Error()})
		}
	}
	for _, w := range warnings {
		out.Warnings = append(out.Warnings, JSONFinding{Key: w.Path, Message: w.Message, File: w.File, Line: w.Line, Source: w.Source})
	}
	for _, f := range rep.Errors {
		out.Errors = append(out.Errors, JSONFinding{Key: f.Key, Message: f.Message})
	}
	for _, f := range rep.Warnings {
		out.Warnings = append(out.Warnings, JSONFinding{Key: f.Key, Message: f.Message})
	}
	out.OK = len(out.Errors) == 0
	return out
}

// Marshal renders j indented, with a final newline.
func (j JSON) Marshal() ([]byte, error) {
	b, err := json.MarshalIndent(j, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("config check: %w", err)
	}
	return append(b, '\n'), nil
}
