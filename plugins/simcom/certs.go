package simcom

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/cellgate/cellgate/sdk"
	"github.com/cellgate/cellgate/sdk/at"
	"github.com/cellgate/cellgate/sdk/atkit"
)

// certPrefix marks files this driver put on the modem. Provision only ever
// deletes files with this prefix, so certificates an operator loaded by hand
// are left alone.
const certPrefix = "cg"

// store is the modem's certificate store as the kit sees it: files named
// "cgca-<12 hex>.pem" after their content, the module's 10240-byte file
// limit, its SSL contexts, and encrypted keys accepted with their password,
// which the module is given (AT+CSSLCFG="keypwd").
func (p Profile) store() atkit.Store {
	return atkit.Store{Prefix: certPrefix, MaxFileBytes: p.MaxCertBytes, Profiles: p.Contexts, KeyPassword: true}
}

// provisioned is a checked bundle, the modem file names it maps to, and its
// SSL context settings in SIMCom's numbers.
type provisioned struct {
	atkit.Credentials
	auth int
	// sslVersion is AT+CSSLCFG="sslversion": 3 (TLS 1.2 only) unless the
	// bundle asks for an older protocol. 4 ("all") would let a downgrade
	// to TLS 1.0 through, so it is never used.
	sslVersion int
}

// checkBundle checks a bundle on the host, before the modem is touched:
// the kit's checks (atkit.Store.Check: PEM syntax, a matching key and
// certificate, validity dates at now, the file limit), then what SIMCom's
// SSL stack can do.
func checkBundle(b sdk.Bundle, p Profile, now time.Time) (provisioned, error) {
	creds, err := p.store().Check(b, now)
	if err != nil {
		return provisioned{}, err
	}
	out := provisioned{Credentials: creds}
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
	switch hasCert := creds.Cert.Name != ""; {
	case b.Insecure && hasCert:
		out.auth = 3 // present our certificate, do not check the server
	case b.Insecure:
		out.auth = 0
	case hasCert:
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
	if p, err = d.unlockForModem(ctx, ch, p, time.Now()); err != nil {
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
	d.mu.Lock()
	suspect := d.storeSuspect
	d.mu.Unlock()
	download, kept := d.profile.store().Plan(p.Credentials, present, suspect)
	report.Kept = append(report.Kept, kept...)
	for _, f := range download {
		var steps []atkit.Step
		if slices.Contains(present, f.Name) {
			// Its content may be filler (see Driver.sync): replace it.
			steps = append(steps, atkit.Step{Op: "delete suspect " + f.Name, Cmd: "AT+CCERTDELE=" + atkit.Quote(f.Name)})
		}
		// The file name is not secret, the key's bytes are.
		steps = append(steps, atkit.Step{Op: "download " + f.Name, Cmd: fmt.Sprintf("AT+CCERTDOWN=%s,%d", atkit.Quote(f.Name), len(f.Data)),
			Payload: f.Data, Timeout: downloadTimeout(len(f.Data), d.config().Baud), Secret: f.Kind == atkit.KindKey})
		// Info, so an operator's terminal shows it while a slow line is busy.
		d.log.Info("downloading certificate", "op", "provision", "file", f.Name, "bytes", len(f.Data))
		if err := atkit.Run(ctx, ch, steps...); err != nil {
			return d.modemErr("provision", err)
		}
		report.Downloaded = append(report.Downloaded, f.Name)
		d.log.Info("certificate downloaded", "op", "provision", "file", f.Name, "bytes", len(f.Data))
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
	for _, f := range p.Files() {
		if !inUse[f.Name] {
			return &sdk.ModemError{Op: "provision", Code: -1, Text: fmt.Sprintf("SSL context %d does not refer to %s after configuration (AT+CSSLCFG? disagrees)", profile, f.Name)}
		}
	}
	for _, n := range d.profile.store().Superseded(present, inUse) {
		if err := atkit.Run(ctx, ch, atkit.Step{Op: "delete superseded " + n, Cmd: "AT+CCERTDELE=" + atkit.Quote(n)}); err != nil {
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
	err := atkit.Run(ctx, ch, atkit.Step{Op: "read SSL contexts", Cmd: "AT+CSSLCFG?", Check: func(r *at.Response) (bool, error) {
		for _, l := range r.Lines {
			v, ok := strings.CutPrefix(at.Normalize(l), "+CSSLCFG:")
			if !ok {
				continue
			}
			fields := atkit.Fields(v)
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
	}})
	return used, err
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
	c := p.Bundle.Profile
	ignoreTime := 1
	if clockSynced {
		ignoreTime = 0
	}
	steps := []atkit.Step{
		{Op: "set TLS version", Cmd: fmt.Sprintf(`AT+CSSLCFG="sslversion",%d,%d`, c, p.sslVersion)},
		{Op: "set auth mode", Cmd: fmt.Sprintf(`AT+CSSLCFG="authmode",%d,%d`, c, p.auth)},
		{Op: "set time check", Cmd: fmt.Sprintf(`AT+CSSLCFG="ignorelocaltime",%d,%d`, c, ignoreTime)},
		{Op: "set handshake timeout", Cmd: fmt.Sprintf(`AT+CSSLCFG="negotiatetime",%d,%d`, c, int(d.negotiateTime()/time.Second))},
	}
	if p.CA.Name != "" {
		steps = append(steps, atkit.Step{Op: "set CA", Cmd: fmt.Sprintf(`AT+CSSLCFG="cacert",%d,%s`, c, atkit.Quote(p.CA.Name))})
	}
	if p.Cert.Name != "" {
		steps = append(steps,
			atkit.Step{Op: "set client certificate", Cmd: fmt.Sprintf(`AT+CSSLCFG="clientcert",%d,%s`, c, atkit.Quote(p.Cert.Name))},
			atkit.Step{Op: "set client key", Cmd: fmt.Sprintf(`AT+CSSLCFG="clientkey",%d,%s`, c, atkit.Quote(p.Key.Name))},
		)
		if pw := p.Bundle.KeyPassword; pw != "" {
			if err := atkit.CheckString(pw); err != nil {
				return &sdk.BundleError{Field: "key_password", Reason: "contains a character the modem cannot take"}
			}
			steps = append(steps, atkit.Step{Op: "set key password", Cmd: fmt.Sprintf(`AT+CSSLCFG="keypwd",%d,%s`, c, atkit.Quote(pw)), Secret: true})
		}
	}
	return atkit.Run(ctx, ch, steps...)
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
	err := atkit.Run(ctx, ch, atkit.Step{Op: "list certificates", Cmd: "AT+CCERTLIST", Check: func(r *at.Response) (bool, error) {
		for _, l := range r.Lines {
			n := at.Normalize(l)
			if v, ok := strings.CutPrefix(n, "+CCERTLIST:"); ok {
				names = append(names, strings.Trim(strings.TrimSpace(v), `"`))
			}
		}
		return true, nil
	}})
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
		if p.Has(name) {
			d.mu.Unlock()
			return &sdk.ModemError{Op: "delete certificate", Code: -1, Text: fmt.Sprintf("%s is in use by SSL context %d", name, c)}
		}
	}
	d.mu.Unlock()
	ch, err := d.ready(ctx)
	if err != nil {
		return err
	}
	if err := atkit.Run(ctx, ch, atkit.Step{Op: "delete certificate " + name, Cmd: "AT+CCERTDELE=" + atkit.Quote(name)}); err != nil {
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
	if err := atkit.CheckString(name); err != nil {
		return &sdk.BundleError{Field: "name", Reason: err.Error()}
	}
	return nil
}
