package simcom

import (
	"context"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/cellgate/cellgate/sdk"
	"github.com/cellgate/cellgate/sdk/at"
)

// certPrefix marks files this driver put on the modem. Provision only ever
// deletes files with this prefix, so certificates an operator loaded by hand
// are left alone.
const certPrefix = "cg"

// provisioned is a checked bundle and the modem file names it maps to.
type provisioned struct {
	bundle sdk.Bundle
	ca     certFile
	cert   certFile // zero when the bundle has no client certificate
	key    certFile
	auth   int
	// sslVersion is AT+CSSLCFG="sslversion": 3 (TLS 1.2 only) unless the
	// bundle asks for an older protocol. 4 ("all") would let a downgrade
	// to TLS 1.0 through, so it is never used.
	sslVersion int
}

type certFile struct {
	name string
	data []byte
}

func (f certFile) set() bool { return f.name != "" }

// nameFor derives a modem file name from the content: "cgca-<12 hex>.pem".
// Equal content gets an equal name, so a second Provision finds the file
// already present and a rotated certificate gets a new name beside the old.
func nameFor(kind string, data []byte) string { return sdk.ContentName(certPrefix+kind, data) }

// checkBundle parses and checks a bundle on the host, before the modem is
// touched: PEM syntax, a matching key and certificate, validity dates, and
// the module's 10240-byte file limit. now is the host clock.
func checkBundle(b sdk.Bundle, p Profile, now time.Time) (provisioned, error) {
	if b.Profile < 0 || b.Profile >= p.Contexts {
		return provisioned{}, &sdk.BundleError{Field: "profile", Reason: fmt.Sprintf("SSL context %d is out of range 0-%d", b.Profile, p.Contexts-1)}
	}
	out := provisioned{bundle: b}
	for _, f := range []struct {
		field string
		data  []byte
	}{{"ca", b.CA}, {"cert", b.Cert}, {"key", b.Key}} {
		if len(f.data) > p.MaxCertBytes {
			return provisioned{}, &sdk.BundleError{Field: f.field, Reason: fmt.Sprintf("%d bytes exceeds the modem's %d-byte file limit (load only the root CA, not the chain)", len(f.data), p.MaxCertBytes)}
		}
	}
	checked, err := sdk.CheckBundle(b, now)
	if err != nil {
		return provisioned{}, err
	}
	if checked.KeyEncrypted && b.KeyPassword == "" {
		return provisioned{}, &sdk.BundleError{Field: "key", Reason: "the private key is encrypted and no key password was given"}
	}
	// An encrypted key's password is handed to the module
	// (AT+CSSLCFG="keypwd"): the host cannot check the pair without
	// decrypting it, which Go's standard library does not do for PKCS#8.
	if checked.CA != nil {
		out.ca = certFile{nameFor("ca", b.CA), b.CA}
	}
	if checked.Cert != nil {
		out.cert = certFile{nameFor("crt", b.Cert), b.Cert}
		out.key = certFile{nameFor("key", b.Key), b.Key}
	}
	switch b.TLSVersion {
	case "", "1.2":
		out.sslVersion = 3
	case "1.1":
		out.sslVersion = 2
	case "1.0":
		out.sslVersion = 1
	default:
		return provisioned{}, &sdk.BundleError{Field: "tls_version", Reason: fmt.Sprintf("%q: want 1.0, 1.1 or 1.2 (the module has no TLS 1.3)", b.TLSVersion)}
	}
	switch {
	case b.Insecure && out.cert.set():
		out.auth = 3 // present our certificate, do not check the server
	case b.Insecure:
		out.auth = 0
	case out.cert.set():
		out.auth = 2
	default:
		out.auth = 1
	}
	return out, nil
}

// Provision puts the bundle's files on the modem and configures SSL context
// b.Profile to use them. Files are named after their content, so only what is
// missing is downloaded; files of ours that no configured context uses any
// more are deleted, after the context points at the new set, so a rotation
// never leaves the modem without a working set. A bad bundle is refused
// before any AT command is sent.
func (d *Driver) Provision(ctx context.Context, b sdk.Bundle) (sdk.ProvisionReport, error) {
	p, err := checkBundle(b, d.profile, time.Now())
	if err != nil {
		return sdk.ProvisionReport{}, err
	}
	ch, err := d.ready(ctx)
	if err != nil {
		return sdk.ProvisionReport{}, err
	}
	report := sdk.ProvisionReport{Profile: b.Profile, AuthMode: p.auth}

	present, err := d.listCerts(ctx, ch)
	if err != nil {
		return report, d.modemErr("provision: list certificates", err)
	}
	if err := d.downloadMissing(ctx, ch, p, present, &report); err != nil {
		return report, err
	}

	d.mu.Lock()
	synced := d.info.ClockSynced
	d.mu.Unlock()
	if err := d.configureContext(ctx, ch, p, synced); err != nil {
		return report, d.modemErr("provision", err)
	}

	d.mu.Lock()
	d.storeSuspect = false
	d.bundles[b.Profile] = p
	d.mu.Unlock()
	err = d.deleteSuperseded(ctx, ch, b.Profile, p, present, &report)
	return report, err
}

// downloadMissing downloads the files of p that are not among present, the
// files on the modem, and notes each file kept or downloaded in report.
// While the store is suspect, files present under p's names are replaced.
func (d *Driver) downloadMissing(ctx context.Context, ch *at.Channel, p provisioned, present []string, report *sdk.ProvisionReport) error {
	have := map[string]bool{}
	for _, n := range present {
		have[n] = true
	}
	d.mu.Lock()
	suspect := d.storeSuspect
	d.mu.Unlock()
	for _, f := range []certFile{p.ca, p.cert, p.key} {
		if !f.set() {
			continue
		}
		if have[f.name] && suspect {
			// Its content may be filler (see Driver.sync): replace it.
			if err := runScript(ctx, ch, []step{{op: "delete suspect " + f.name, cmd: "AT+CCERTDELE=" + quote(f.name)}}, nil); err != nil {
				return d.modemErr("provision", err)
			}
			have[f.name] = false
		}
		if have[f.name] {
			report.Kept = append(report.Kept, f.name)
			continue
		}
		cmd := fmt.Sprintf("AT+CCERTDOWN=%s,%d", quote(f.name), len(f.data))
		// The file name is not secret, the key's bytes are.
		dl := step{op: "download " + f.name, cmd: cmd, payload: f.data, timeout: downloadTimeout(len(f.data), d.config().Baud), secret: f.name == p.key.name}
		if err := runScript(ctx, ch, []step{dl}, nil); err != nil {
			return d.modemErr("provision", err)
		}
		have[f.name] = true
		report.Downloaded = append(report.Downloaded, f.name)
		d.log.Info("certificate downloaded", "op", "provision", "file", f.name, "bytes", len(f.data))
	}
	return nil
}

// deleteSuperseded deletes the files of ours among present that no SSL
// context refers to any more, once SSL context profile is configured with
// p, and notes them in report. It fails only when the modem says the
// context does not refer to p's files; a file it cannot delete, or not
// knowing what is in use, leaves files behind with a warning.
func (d *Driver) deleteSuperseded(ctx context.Context, ch *at.Channel, profile int, p provisioned, present []string, report *sdk.ProvisionReport) error {
	// What is superseded is what no SSL context refers to any more, by the
	// modem's own account: this plugin process may be younger than the
	// contexts (an agent restart), and other contexts' files must survive.
	inUse, err := d.referencedFiles(ctx, ch)
	if err != nil {
		d.log.Warn("cannot tell which certificates the SSL contexts use; deleting none", "op", "provision", "err", err)
		return nil
	}
	for _, f := range []certFile{p.ca, p.cert, p.key} {
		if f.set() && !inUse[f.name] {
			return &sdk.ModemError{Op: "provision", Code: -1, Text: fmt.Sprintf("SSL context %d does not refer to %s after configuration (AT+CSSLCFG? disagrees)", profile, f.name)}
		}
	}
	for _, n := range present {
		if !strings.HasPrefix(n, certPrefix) || inUse[n] || !isOurs(n) {
			continue
		}
		if err := runScript(ctx, ch, []step{{op: "delete superseded " + n, cmd: "AT+CCERTDELE=" + quote(n)}}, nil); err != nil {
			// The new set works already; a leftover file only costs flash.
			d.log.Warn("could not delete a superseded certificate", "file", n, "err", err)
			continue
		}
		report.Deleted = append(report.Deleted, n)
	}
	return nil
}

// referencedFiles asks the modem which certificate files its SSL contexts
// refer to (AT+CSSLCFG?: one line per context, the CA, client certificate
// and key file names in fields 6-8, quoted or not).
func (d *Driver) referencedFiles(ctx context.Context, ch *at.Channel) (map[string]bool, error) {
	used := map[string]bool{}
	lines := 0
	err := runScript(ctx, ch, []step{{op: "read SSL contexts", cmd: "AT+CSSLCFG?", check: func(r *at.Response) (bool, error) {
		for _, l := range r.Lines {
			v, ok := strings.CutPrefix(at.Normalize(l), "+CSSLCFG:")
			if !ok {
				continue
			}
			fields := splitFields(v)
			if len(fields) < 8 {
				return false, fmt.Errorf("AT+CSSLCFG? line %q has %d fields, want at least 8", l, len(fields))
			}
			for _, name := range fields[5:8] {
				if name != "" {
					used[name] = true
				}
			}
			lines++
		}
		if lines == 0 {
			return false, fmt.Errorf("AT+CSSLCFG? listed no context")
		}
		return true, nil
	}}}, nil)
	return used, err
}

// isOurs reports whether name has the shape nameFor produces.
func isOurs(name string) bool {
	for _, kind := range []string{"ca", "crt", "key"} {
		rest, ok := strings.CutPrefix(name, certPrefix+kind+"-")
		if ok && len(rest) == 12+len(".pem") && strings.HasSuffix(rest, ".pem") {
			_, err := hex.DecodeString(strings.TrimSuffix(rest, ".pem"))
			return err == nil
		}
	}
	return false
}

// downloadTimeout allows the file's time on the line at the configured baud
// (10 bits per byte) three times over, plus the module's own write time.
func downloadTimeout(n, baud int) time.Duration {
	if baud <= 0 {
		baud = 115200
	}
	line := time.Duration(n*10) * time.Second / time.Duration(baud)
	return 3*line + 10*time.Second
}

// configureContext writes the SSL context for a checked bundle. The keys are
// re-sent every time (they are cheap and the module may have forgotten them
// after a reboot); the time check is on only when the modem clock is set,
// because an unsynchronised module believes it is 1980 and would reject
// every certificate as not yet valid.
func (d *Driver) configureContext(ctx context.Context, ch *at.Channel, p provisioned, clockSynced bool) error {
	c := p.bundle.Profile
	ignoreTime := 1
	if clockSynced {
		ignoreTime = 0
	}
	steps := []step{
		{op: "set TLS version", cmd: fmt.Sprintf(`AT+CSSLCFG="sslversion",%d,%d`, c, p.sslVersion)},
		{op: "set auth mode", cmd: fmt.Sprintf(`AT+CSSLCFG="authmode",%d,%d`, c, p.auth)},
		{op: "set time check", cmd: fmt.Sprintf(`AT+CSSLCFG="ignorelocaltime",%d,%d`, c, ignoreTime)},
		{op: "set handshake timeout", cmd: fmt.Sprintf(`AT+CSSLCFG="negotiatetime",%d,%d`, c, int(d.negotiateTime()/time.Second))},
	}
	if p.ca.set() {
		steps = append(steps, step{op: "set CA", cmd: fmt.Sprintf(`AT+CSSLCFG="cacert",%d,%s`, c, quote(p.ca.name))})
	}
	if p.cert.set() {
		steps = append(steps,
			step{op: "set client certificate", cmd: fmt.Sprintf(`AT+CSSLCFG="clientcert",%d,%s`, c, quote(p.cert.name))},
			step{op: "set client key", cmd: fmt.Sprintf(`AT+CSSLCFG="clientkey",%d,%s`, c, quote(p.key.name))},
		)
		if p.bundle.KeyPassword != "" {
			if err := validATString(p.bundle.KeyPassword); err != nil {
				return &sdk.BundleError{Field: "key_password", Reason: "contains a character the modem cannot take"}
			}
			steps = append(steps, step{op: "set key password", cmd: fmt.Sprintf(`AT+CSSLCFG="keypwd",%d,%s`, c, quote(p.bundle.KeyPassword)), secret: true})
		}
	}
	return runScript(ctx, ch, steps, nil)
}

// ListCerts returns the names of the files in the modem's certificate store.
func (d *Driver) ListCerts(ctx context.Context) ([]string, error) {
	ch, err := d.ready(ctx)
	if err != nil {
		return nil, err
	}
	names, err := d.listCerts(ctx, ch)
	if err != nil {
		return nil, d.modemErr("list certificates", err)
	}
	return names, nil
}

func (d *Driver) listCerts(ctx context.Context, ch *at.Channel) ([]string, error) {
	var names []string
	err := runScript(ctx, ch, []step{{op: "list certificates", cmd: "AT+CCERTLIST", check: func(r *at.Response) (bool, error) {
		for _, l := range r.Lines {
			n := at.Normalize(l)
			if v, ok := strings.CutPrefix(n, "+CCERTLIST:"); ok {
				names = append(names, strings.Trim(strings.TrimSpace(v), `"`))
			}
		}
		return true, nil
	}}}, nil)
	return names, err
}

// DeleteCert deletes one file from the modem's certificate store. A file an
// SSL context still uses is refused: deleting it would break the next dial.
func (d *Driver) DeleteCert(ctx context.Context, name string) error {
	if err := validCertName(name); err != nil {
		return err
	}
	d.mu.Lock()
	for c, p := range d.bundles {
		for _, f := range []certFile{p.ca, p.cert, p.key} {
			if f.name == name {
				d.mu.Unlock()
				return &sdk.ModemError{Op: "delete certificate", Code: -1, Text: fmt.Sprintf("%s is in use by SSL context %d", name, c)}
			}
		}
	}
	d.mu.Unlock()
	ch, err := d.ready(ctx)
	if err != nil {
		return err
	}
	if err := runScript(ctx, ch, []step{{op: "delete certificate " + name, cmd: "AT+CCERTDELE=" + quote(name)}}, nil); err != nil {
		return d.modemErr("delete certificate", err)
	}
	return nil
}

// validCertName applies the module's file name rules: 5-128 bytes, ending in
// .pem or .der, and sendable inside an AT string.
func validCertName(name string) error {
	if len(name) < 5 || len(name) > 128 {
		return &sdk.BundleError{Field: "name", Reason: fmt.Sprintf("%q: a certificate file name has 5-128 bytes", name)}
	}
	if !strings.HasSuffix(name, ".pem") && !strings.HasSuffix(name, ".der") {
		return &sdk.BundleError{Field: "name", Reason: fmt.Sprintf("%q: a certificate file name ends in .pem or .der", name)}
	}
	if err := validATString(name); err != nil {
		return &sdk.BundleError{Field: "name", Reason: err.Error()}
	}
	return nil
}
