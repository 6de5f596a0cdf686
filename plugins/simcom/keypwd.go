package simcom

import (
	"context"
	"strings"
	"time"

	"github.com/cellgate/cellgate/sdk"
	"github.com/cellgate/cellgate/sdk/at"
	"github.com/cellgate/cellgate/sdk/atkit"
)

// noKeyPwdReason is the refusal of an encrypted key by a module without
// keypwd, saying the ways out.
const noKeyPwdReason = `the private key is encrypted and this module's firmware has no AT+CSSLCFG="keypwd" ` +
	`(AT+CSSLCFG=? does not list it): update the firmware, use tls.mode: host, ` +
	`or set modem.options.` + OptionDecryptKeyOnHost + `: "true" to download the key decrypted`

// unlockForModem returns p as the module can use it. An encrypted key stays
// encrypted, with its password for keypwd, on a module that has keypwd; on
// one without, it is decrypted here only when the operator set
// OptionDecryptKeyOnHost, and refused otherwise.
func (d *Driver) unlockForModem(ctx context.Context, ch *at.Channel, p provisioned, now time.Time) (provisioned, error) {
	if !p.Checked.KeyEncrypted {
		return p, nil
	}
	has, err := hasKeyPwd(ctx, ch)
	if err != nil {
		return p, d.modemErr("provision: probe keypwd", err)
	}
	if has {
		return p, nil
	}
	d.mu.Lock()
	decrypt := d.opts.decryptKeyOnHost
	d.mu.Unlock()
	if !decrypt {
		return p, &sdk.BundleError{Field: "key_password", Reason: noKeyPwdReason}
	}
	plain, err := sdk.DecryptKeyPEM(p.Bundle.Key, p.Bundle.KeyPassword)
	if err != nil {
		return p, &sdk.BundleError{Field: "key_password", Reason: err.Error()}
	}
	b := p.Bundle
	b.Key, b.KeyPassword = plain, ""
	d.log.Warn("module has no keypwd: downloading the client key decrypted, as "+OptionDecryptKeyOnHost+" allows",
		"op", "provision", "profile", b.Profile)
	return checkBundle(b, d.profile, now)
}

// hasKeyPwd asks the module whether AT+CSSLCFG takes "keypwd"; firmware
// before the 2021-04-21 manual revision does not.
func hasKeyPwd(ctx context.Context, ch *at.Channel) (bool, error) {
	found := false
	err := atkit.Run(ctx, ch, atkit.Step{Op: "list SSL settings", Cmd: "AT+CSSLCFG=?", Check: func(r *at.Response) (bool, error) {
		for _, l := range r.Lines {
			if strings.Contains(strings.ToLower(at.Normalize(l)), `"keypwd"`) {
				found = true
			}
		}
		return true, nil
	}})
	return found, err
}
