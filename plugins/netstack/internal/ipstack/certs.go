package ipstack

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/cellgate/cellgate/sdk"
)

// profiles is how many TLS profiles (0-9) the store keeps, as the contract
// spells Bundle.Profile.
const profiles = 10

// maxFileBytes bounds one PEM file; a CA bundle of a few hundred roots fits.
const maxFileBytes = 1 << 20

// profile is one provisioned TLS profile: the files it uses and the
// crypto/tls material parsed from them.
type profile struct {
	ca, cert, key string // file names; cert and key "" without a client identity
	roots         *x509.CertPool
	identity      *tls.Certificate
	insecure      bool
	maxVersion    uint16 // 0: TLS 1.3 allowed
	auth          int
}

// store is the plugin's certificate store: files in memory, named after
// their content, and the profiles that use them. It is lost when the
// process ends; the agent provisions again after a restart.
type store struct {
	files    map[string][]byte
	profiles map[int]profile
}

func newStore() store { return store{files: map[string][]byte{}, profiles: map[int]profile{}} }

// nameFor derives a file name from the content: "ca-<12 hex>.pem". Equal
// content gets an equal name, so a second Provision finds it present.
func nameFor(kind string, data []byte) string { return sdk.ContentName(kind, data) }

// inUse reports which profile uses the file name, if any.
func (s *store) inUse(name string) (int, bool) {
	for i, p := range s.profiles {
		if p.ca == name || p.cert == name || p.key == name {
			return i, true
		}
	}
	return 0, false
}

// checkBundle parses and checks a bundle into a profile (file names still
// to be stored): PEM syntax, validity dates, a matching key and
// certificate, a CA unless Insecure, and TLS 1.2 or later.
func checkBundle(b sdk.Bundle, now time.Time) (profile, error) {
	if b.Profile < 0 || b.Profile >= profiles {
		return profile{}, &sdk.BundleError{Field: "profile", Reason: fmt.Sprintf("TLS profile %d is out of range 0-%d", b.Profile, profiles-1)}
	}
	for _, f := range []struct {
		field string
		data  []byte
	}{{"ca", b.CA}, {"cert", b.Cert}, {"key", b.Key}} {
		if len(f.data) > maxFileBytes {
			return profile{}, &sdk.BundleError{Field: f.field, Reason: fmt.Sprintf("%d bytes exceeds the %d-byte limit", len(f.data), maxFileBytes)}
		}
	}
	var p profile
	switch b.TLSVersion {
	case "":
	case "1.2":
		p.maxVersion = tls.VersionTLS12
	default:
		return profile{}, &sdk.BundleError{Field: "tls_version", Reason: fmt.Sprintf("%q: want 1.2 or empty (TLS 1.2 or 1.3); the netstack plugin speaks nothing older", b.TLSVersion)}
	}
	checked, err := sdk.CheckBundle(b, now)
	if err != nil {
		return profile{}, err
	}
	if checked.CA != nil {
		p.roots = x509.NewCertPool()
		for _, c := range checked.CA {
			p.roots.AddCert(c)
		}
		p.ca = nameFor("ca", b.CA)
	}
	if checked.Cert != nil {
		key, err := plainKey(b, checked.KeyEncrypted)
		if err != nil {
			return profile{}, err
		}
		id, err := tls.X509KeyPair(b.Cert, key)
		if err != nil {
			return profile{}, &sdk.BundleError{Field: "key", Reason: fmt.Sprintf("the key does not match the client certificate or cannot be parsed: %v", err)}
		}
		p.identity = &id
		p.cert, p.key = nameFor("crt", b.Cert), nameFor("key", b.Key)
	}
	p.insecure = b.Insecure
	switch {
	case b.Insecure:
		p.auth = 0
	case p.identity != nil:
		p.auth = 2
	default:
		p.auth = 1
	}
	return p, nil
}

// Provision checks b and makes profile b.Profile use it. Files are named
// after their content and kept in memory: what is already stored is kept,
// the rest is stored, and then the files no profile uses any more are
// deleted. The profile switches to the new set in one step under the lock,
// so a rotation never leaves it without a working set. Running it twice
// changes nothing. A broken bundle is a *sdk.BundleError and changes
// nothing either.
func (t *Transport) Provision(ctx context.Context, b sdk.Bundle) (sdk.ProvisionReport, error) {
	p, err := checkBundle(b, time.Now())
	if err != nil {
		return sdk.ProvisionReport{}, err
	}
	if err := ctx.Err(); err != nil {
		return sdk.ProvisionReport{}, fmt.Errorf("provision: %w", err)
	}
	report := sdk.ProvisionReport{Profile: b.Profile, AuthMode: p.auth, Downloaded: []string{}, Deleted: []string{}, Kept: []string{}}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, f := range []struct {
		name string
		data []byte
	}{{p.ca, b.CA}, {p.cert, b.Cert}, {p.key, b.Key}} {
		if f.name == "" {
			continue
		}
		if _, ok := t.store.files[f.name]; ok {
			report.Kept = append(report.Kept, f.name)
			continue
		}
		t.store.files[f.name] = slices.Clone(f.data)
		report.Downloaded = append(report.Downloaded, f.name)
	}
	old, had := t.store.profiles[b.Profile]
	t.store.profiles[b.Profile] = p
	if had {
		for _, name := range []string{old.ca, old.cert, old.key} {
			if name == "" {
				continue
			}
			if _, used := t.store.inUse(name); used {
				continue
			}
			if _, ok := t.store.files[name]; ok {
				delete(t.store.files, name)
				report.Deleted = append(report.Deleted, name)
			}
		}
	}
	t.log.Info("provisioned", "op", "provision", "profile", b.Profile, "downloaded", len(report.Downloaded), "kept", len(report.Kept), "deleted", len(report.Deleted), "auth_mode", p.auth)
	return report, nil
}

// ListCerts returns the names of the stored files, sorted.
func (t *Transport) ListCerts(ctx context.Context) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("list certificates: %w", err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Sorted(maps.Keys(t.store.files)), nil
}

// DeleteCert removes a stored file. A file a profile uses is refused with
// a *sdk.ModemError (provision another bundle first); a name that is not
// stored is not an error, so deleting twice is harmless.
func (t *Transport) DeleteCert(ctx context.Context, name string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("delete certificate: %w", err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if i, used := t.store.inUse(name); used {
		return &sdk.ModemError{Op: "delete certificate", Code: -1, Text: fmt.Sprintf("%s is in use by TLS profile %d", name, i)}
	}
	delete(t.store.files, name)
	return nil
}

// plainKey is b's key as crypto/tls takes it: an encrypted key is decrypted
// in memory with b.KeyPassword (tls.key_password_file), which never leaves
// this process and never appears in an error; the plain PEM is kept only
// inside the tls.Certificate built from it.
func plainKey(b sdk.Bundle, encrypted bool) ([]byte, error) {
	if !encrypted {
		return b.Key, nil
	}
	if b.KeyPassword == "" {
		return nil, &sdk.BundleError{Field: "key_password", Reason: "the private key is encrypted and no password was given (set tls.key_password_file)"}
	}
	plain, err := sdk.DecryptKeyPEM(b.Key, b.KeyPassword)
	if err != nil {
		return nil, &sdk.BundleError{Field: "key_password", Reason: err.Error()}
	}
	return plain, nil
}
