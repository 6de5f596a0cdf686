package atkit

import (
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/cellgate/cellgate/sdk"
)

// The kinds of credential file, the middle of their content names.
const (
	KindCA   = "ca"
	KindCert = "crt"
	KindKey  = "key"
)

// Store describes a modem's credential file store and how a driver names its
// files there. Files are named after their content (sdk.ContentName):
// "<Prefix><kind>-<12 hex digits of SHA-256>.pem", so provisioning twice
// finds every file already there, and a rotated certificate gets a new name
// beside the old one, deleted only once nothing uses it.
type Store struct {
	// Prefix marks the files this driver puts on the modem ("cg"); a
	// driver deletes only files with its prefix and content-name shape, so
	// certificates an operator loaded by hand are left alone.
	Prefix string
	// MaxFileBytes is the largest file the modem takes (0: no limit).
	MaxFileBytes int
	// Profiles is the number of TLS profiles (SSL contexts) of the modem,
	// numbered from 0 (0: any profile is accepted).
	Profiles int
	// KeyPassword says the modem can use a password-protected private key
	// (the password is handed to it); without it an encrypted key is
	// refused.
	KeyPassword bool
}

// File is one credential file as it is stored on the modem.
type File struct {
	// Kind is KindCA, KindCert or KindKey.
	Kind string
	// Name is its content name (Store.Name); Data its bytes (PEM).
	Name string
	Data []byte
}

// Credentials is a bundle that passed Store.Check, with the modem files it
// maps to.
type Credentials struct {
	Bundle  sdk.Bundle
	Checked sdk.CheckedBundle
	// CA is empty (Name "") for an Insecure bundle without CA; Cert and
	// Key are empty for a bundle without client identity.
	CA, Cert, Key File
}

// Files returns the files of c that are set, CA first.
func (c Credentials) Files() []File {
	var out []File
	for _, f := range []File{c.CA, c.Cert, c.Key} {
		if f.Name != "" {
			out = append(out, f)
		}
	}
	return out
}

// Has reports whether name is one of c's files.
func (c Credentials) Has(name string) bool {
	for _, f := range c.Files() {
		if f.Name == name {
			return true
		}
	}
	return false
}

// Check makes every host-side check of b before anything reaches the modem,
// and names its files: the profile in range, each file within MaxFileBytes,
// then sdk.CheckBundle (PEM syntax, expiry at now, a key matching its
// certificate), and an encrypted key only with a password and a modem that
// takes one. A refusal is an *sdk.BundleError naming the field. Limits that
// are the vendor's own (TLS versions, cipher suites) are the driver's to
// check.
func (s Store) Check(b sdk.Bundle, now time.Time) (Credentials, error) {
	if s.Profiles > 0 && (b.Profile < 0 || b.Profile >= s.Profiles) {
		return Credentials{}, &sdk.BundleError{Field: "profile", Reason: fmt.Sprintf("TLS profile %d is out of range 0-%d", b.Profile, s.Profiles-1)}
	}
	for _, f := range []struct {
		field string
		data  []byte
	}{{"ca", b.CA}, {"cert", b.Cert}, {"key", b.Key}} {
		if s.MaxFileBytes > 0 && len(f.data) > s.MaxFileBytes {
			return Credentials{}, &sdk.BundleError{Field: f.field, Reason: fmt.Sprintf("%d bytes exceeds the modem's %d-byte file limit (load only the root CA, not the chain)", len(f.data), s.MaxFileBytes)}
		}
	}
	checked, err := sdk.CheckBundle(b, now)
	if err != nil {
		return Credentials{}, err
	}
	if checked.KeyEncrypted {
		if !s.KeyPassword {
			return Credentials{}, &sdk.BundleError{Field: "key", Reason: "the private key is encrypted and this modem cannot use an encrypted key"}
		}
		if b.KeyPassword == "" {
			return Credentials{}, &sdk.BundleError{Field: "key", Reason: "the private key is encrypted and no key password was given"}
		}
	}
	if b.KeyPassword != "" {
		if err := CheckString(b.KeyPassword); err != nil {
			return Credentials{}, &sdk.BundleError{Field: "key_password", Reason: "contains a character the modem cannot take"}
		}
	}
	c := Credentials{Bundle: b, Checked: checked}
	if checked.CA != nil {
		c.CA = s.file(KindCA, b.CA)
	}
	if checked.Cert != nil {
		c.Cert = s.file(KindCert, b.Cert)
		c.Key = s.file(KindKey, b.Key)
	}
	return c, nil
}

func (s Store) file(kind string, data []byte) File {
	return File{Kind: kind, Name: s.Name(kind, data), Data: data}
}

// Name is the content name of a file of kind (KindCA, KindCert, KindKey)
// holding data, e.g. "cgca-1f2e3d4c5b6a.pem".
func (s Store) Name(kind string, data []byte) string {
	return sdk.ContentName(s.Prefix+kind, data)
}

// Owns reports whether name has the shape Name gives this store's files, so
// a driver may delete it once nothing uses it.
func (s Store) Owns(name string) bool {
	for _, kind := range []string{KindCA, KindCert, KindKey} {
		rest, ok := strings.CutPrefix(name, s.Prefix+kind+"-")
		if ok && len(rest) == 12+len(".pem") && strings.HasSuffix(rest, ".pem") {
			_, err := hex.DecodeString(strings.TrimSuffix(rest, ".pem"))
			return err == nil
		}
	}
	return false
}

// Plan compares c with present, the names the modem's store lists, and
// returns the files to download and the names already there. suspect names
// files present whose content cannot be trusted (see SyncResult.Unstuck):
// they are downloaded again.
func (s Store) Plan(c Credentials, present []string, suspect bool) (download []File, kept []string) {
	have := make(map[string]bool, len(present))
	for _, n := range present {
		have[n] = true
	}
	for _, f := range c.Files() {
		if have[f.Name] && !suspect {
			kept = append(kept, f.Name)
			continue
		}
		download = append(download, f)
	}
	return download, kept
}

// Superseded returns the names among present that this store owns and that
// nothing uses any more. inUse is what the modem's TLS profiles refer to, by
// the modem's own account: the driver process may be younger than the
// profiles, and other profiles' files must survive.
func (s Store) Superseded(present []string, inUse map[string]bool) []string {
	var out []string
	for _, n := range present {
		if s.Owns(n) && !inUse[n] {
			out = append(out, n)
		}
	}
	return out
}
