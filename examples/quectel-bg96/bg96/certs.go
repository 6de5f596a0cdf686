package bg96

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/cellgate/cellgate/sdk"
	"github.com/cellgate/cellgate/sdk/at"
	"github.com/cellgate/cellgate/sdk/atkit"
)

// store is the BG96's user file system (UFS) as a credential store. File
// size: the SSL manual gives no limit for certificate files; 10240 bytes is
// AT+QFUPL's default size and far above any one certificate or key.
var store = atkit.Store{Prefix: "cg", MaxFileBytes: 10240, Profiles: sslContexts}

// sslVersions maps Bundle.TLSVersion to AT+QSSLCFG="sslversion" (0 SSL
// 3.0, 1 TLS 1.0, 2 TLS 1.1, 3 TLS 1.2, 4 all).
var sslVersions = map[string]int{"": 4, "1.0": 1, "1.1": 2, "1.2": 3}

// sslProfile is what Provision configured in one SSL context, kept so the
// context can be configured again after a reboot (SSL contexts do not
// survive one; files do).
type sslProfile struct {
	ctx                       int
	version, seclevel         int
	cacert, clientcert, clkey string
}

// cfgItems is the profile as AT+QSSLCFG items, in the order they are set:
// the client key last, so a rotation has switched every file before it
// deletes the old ones.
func (p sslProfile) cfgItems(set settings) []string {
	ignore := 0
	if set.ignoreLocalTime {
		ignore = 1
	}
	items := []string{
		fmt.Sprintf(`"sslversion",%d,%d`, p.ctx, p.version),
		fmt.Sprintf(`"ciphersuite",%d,0XFFFF`, p.ctx), // unquoted: a quoted code is an ERROR on a real BG96
		fmt.Sprintf(`"seclevel",%d,%d`, p.ctx, p.seclevel),
		fmt.Sprintf(`"ignorelocaltime",%d,%d`, p.ctx, ignore),
		fmt.Sprintf(`"negotiatetime",%d,%d`, p.ctx, int(set.negotiateTime/time.Second)),
		fmt.Sprintf(`"sni",%d,0`, p.ctx), // a Dial with a server name turns it on
	}
	if p.cacert != "" {
		items = append(items, fmt.Sprintf(`"cacert",%d,%s`, p.ctx, atkit.Quote(p.cacert)))
	}
	if p.clientcert != "" {
		items = append(items,
			fmt.Sprintf(`"clientcert",%d,%s`, p.ctx, atkit.Quote(p.clientcert)),
			fmt.Sprintf(`"clientkey",%d,%s`, p.ctx, atkit.Quote(p.clkey)))
	}
	return items
}

// Provision uploads the bundle's files that the modem lacks (AT+QFUPL,
// named after their content), points SSL context b.Profile at them
// (AT+QSSLCFG) and then deletes the files of this driver that no SSL
// context uses any more. A broken bundle is refused before any command.
func (d *Driver) Provision(ctx context.Context, b sdk.Bundle) (_ sdk.ProvisionReport, err error) {
	defer func() { err = honour(ctx, err) }()
	var rep sdk.ProvisionReport
	creds, err := store.Check(b, time.Now())
	if err != nil {
		return rep, err
	}
	version, ok := sslVersions[b.TLSVersion]
	if !ok {
		return rep, &sdk.BundleError{Field: "tls_version", Reason: fmt.Sprintf("%q is not one of \"\", \"1.0\", \"1.1\", \"1.2\" (the BG96 has no TLS 1.3)", b.TLSVersion)}
	}
	if err := d.ensureReady(ctx); err != nil {
		return rep, err
	}
	present, err := d.listFiles(ctx)
	if err != nil {
		return rep, err
	}
	download, kept := store.Plan(creds, present, false)
	for _, f := range download {
		if err := d.upload(ctx, f); err != nil {
			return rep, err
		}
		rep.Downloaded = append(rep.Downloaded, f.Name)
	}
	p := sslProfile{ctx: b.Profile, version: version, cacert: creds.CA.Name, clientcert: creds.Cert.Name, clkey: creds.Key.Name}
	switch {
	case creds.Cert.Name != "":
		p.seclevel = 2
	case creds.CA.Name != "":
		p.seclevel = 1
	}
	if err := d.configure(ctx, p); err != nil {
		return rep, err
	}
	d.mu.Lock()
	d.profiles[p.ctx] = p
	d.mu.Unlock()
	deleted, err := d.deleteSuperseded(ctx, present)
	rep = sdk.ProvisionReport{Profile: b.Profile, Downloaded: rep.Downloaded, Kept: kept, Deleted: deleted, AuthMode: p.seclevel}
	return rep, err
}

// configure sets every item of p in its SSL context.
func (d *Driver) configure(ctx context.Context, p sslProfile) error {
	d.mu.Lock()
	set := d.set
	d.mu.Unlock()
	for _, item := range p.cfgItems(set) {
		_, err := d.command(ctx, "AT+QSSLCFG="+item, cmdTimeout)
		var ae *at.Error
		if strings.HasPrefix(item, `"sni"`) && errors.As(err, &ae) {
			// Firmware before BG96MAR02A07 has no "sni" item: it never sends SNI.
			d.log.Info("the modem has no SNI setting", "profile", p.ctx)
			continue
		}
		if err != nil {
			return d.sdkError(fmt.Sprintf("provision: configure SSL context %d", p.ctx), err)
		}
	}
	d.mu.Lock()
	d.sni[p.ctx] = false
	d.mu.Unlock()
	return nil
}

// deleteSuperseded deletes this driver's files that no SSL context refers
// to, by the modem's own account of every context.
func (d *Driver) deleteSuperseded(ctx context.Context, present []string) ([]string, error) {
	inUse := map[string]bool{}
	for sslCtx := range sslContexts {
		for _, item := range []string{"cacert", "clientcert", "clientkey"} {
			resp, err := d.command(ctx, fmt.Sprintf(`AT+QSSLCFG=%q,%d`, item, sslCtx), cmdTimeout)
			if err != nil {
				return nil, d.sdkError("provision: read SSL context", err)
			}
			if v, ok := atkit.Field(resp, "+QSSLCFG:"); ok {
				if f := atkit.Fields(v); len(f) >= 3 && f[2] != "" {
					inUse[strings.TrimPrefix(f[2], "UFS:")] = true
				}
			}
		}
	}
	var deleted []string
	for _, name := range store.Superseded(present, inUse) {
		if err := d.deleteFile(ctx, name); err != nil && !isFileCode(err, 405) {
			return deleted, err
		}
		deleted = append(deleted, name)
	}
	return deleted, nil
}

// ListCerts lists the files in the modem's UFS (AT+QFLST="*").
func (d *Driver) ListCerts(ctx context.Context) (_ []string, err error) {
	defer func() { err = honour(ctx, err) }()
	if err := d.ensureReady(ctx); err != nil {
		return nil, err
	}
	return d.listFiles(ctx)
}

// DeleteCert deletes one UFS file (AT+QFDEL).
func (d *Driver) DeleteCert(ctx context.Context, name string) (err error) {
	defer func() { err = honour(ctx, err) }()
	if err := atkit.CheckString(name); err != nil || name == "" || name == "*" {
		return &sdk.ModemError{Op: "delete certificate", Code: -1, Text: fmt.Sprintf("bad file name %q", name)}
	}
	if err := d.ensureReady(ctx); err != nil {
		return err
	}
	return d.deleteFile(ctx, name)
}

func (d *Driver) listFiles(ctx context.Context) ([]string, error) {
	resp, err := d.command(ctx, `AT+QFLST="*"`, cmdTimeout)
	if err != nil {
		return nil, d.fileError("list files", err)
	}
	names := []string{}
	for _, l := range resp.Lines {
		v, ok := strings.CutPrefix(at.Normalize(l), "+QFLST:")
		if !ok {
			continue
		}
		f := atkit.Fields(v)
		// A real BG96 also lists its "security/" directory.
		if len(f) == 0 || f[0] == "" || strings.HasSuffix(f[0], "/") {
			continue
		}
		names = append(names, strings.TrimPrefix(f[0], "UFS:"))
	}
	return names, nil
}

func (d *Driver) deleteFile(ctx context.Context, name string) error {
	if _, err := d.command(ctx, "AT+QFDEL="+atkit.Quote(name), cmdTimeout); err != nil {
		return d.fileError("delete file "+name, err)
	}
	return nil
}

// upload writes one file with AT+QFUPL="<name>",<size>,<timeout>: the
// modem answers CONNECT, takes exactly <size> raw bytes, then reports
// "+QFUPL: <size>,<checksum>" and OK, all one command for sdk/at
// (CONNECT is its prompt). The size and the checksum (16-bit XOR of
// big-endian byte pairs) are checked: a short or garbled upload is an
// error and the file is deleted. A private key's bytes are never traced.
func (d *Driver) upload(ctx context.Context, f atkit.File) error {
	ch, err := d.channel()
	if err != nil {
		return err
	}
	opts := []at.CommandOption{at.WithPromptLine("CONNECT")}
	if f.Kind == atkit.KindKey {
		opts = append(opts, at.WithSecret())
	}
	var report string
	err = d.exchange(ctx, func(ctx context.Context) error {
		cctx, cancel := context.WithTimeout(ctx, cmdTimeout+time.Duration(len(f.Data)/100)*time.Millisecond)
		defer cancel()
		resp, err := ch.CommandPayload(cctx, fmt.Sprintf("AT+QFUPL=%s,%d,10", atkit.Quote(f.Name), len(f.Data)), f.Data, opts...)
		if err != nil {
			return err
		}
		v, ok := atkit.Field(resp, "+QFUPL:")
		if !ok {
			return fmt.Errorf("no +QFUPL report before %q", resp.Final)
		}
		report = "+QFUPL: " + v
		return nil
	})
	if err != nil {
		return d.fileError("upload "+f.Name, err)
	}
	if err := checkUpload(report, f.Data); err != nil {
		d.deleteFile(ctx, f.Name)
		return &sdk.ModemError{Op: "upload " + f.Name, Code: -1, Text: err.Error()}
	}
	return nil
}

// checkUpload compares "+QFUPL: <size>,<checksum>" with data. The checksum
// is printed in hex, lower case on real modules, upper case in the manual.
func checkUpload(report string, data []byte) error {
	f := atkit.Fields(strings.TrimPrefix(at.Normalize(report), "+QFUPL:"))
	if len(f) < 2 {
		return fmt.Errorf("%q: want +QFUPL: <size>,<checksum>", report)
	}
	size, err := atoi(f[0])
	if err != nil || size != len(data) {
		return fmt.Errorf("%q: the modem stored %s of %d bytes", report, f[0], len(data))
	}
	sum, err := strconv.ParseUint(f[1], 16, 16)
	if err != nil || uint16(sum) != checksum(data) {
		return fmt.Errorf("%q: checksum differs from %x computed over the %d bytes sent", report, checksum(data), len(data))
	}
	return nil
}

// checksum is Quectel's file checksum: the XOR of the data as big-endian
// 16-bit words, an odd last byte being the high byte of a last word.
func checksum(data []byte) uint16 {
	var sum uint16
	for i := 0; i < len(data); i += 2 {
		w := uint16(data[i]) << 8
		if i+1 < len(data) {
			w |= uint16(data[i+1])
		}
		sum ^= w
	}
	return sum
}

// fileError maps a FILE command's failure, whose +CME ERROR codes are
// Quectel's 4xx file codes, not 3GPP's.
func (d *Driver) fileError(op string, err error) error {
	var cme *at.CMEError
	if errors.As(err, &cme) && cme.Code >= 400 {
		text := fmt.Sprintf("+CME ERROR: %d", cme.Code)
		if meaning, ok := fileErrText[cme.Code]; ok {
			text += " (" + meaning + ")"
		}
		return &sdk.ModemError{Op: op, Code: cme.Code, Text: text}
	}
	return d.sdkError(op, err)
}

func isFileCode(err error, code int) bool {
	var me *sdk.ModemError
	return errors.As(err, &me) && me.Code == code
}
