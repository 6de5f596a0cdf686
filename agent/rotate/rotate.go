// Package rotate is the on-disk half of a client certificate rotation by
// CSR: the journal that makes a rotation survive a crash at any step, the
// new key and certificate written beside the configured ones, the checks
// an issued certificate must pass, and recovery at start.
//
// A rotation of the files tls.cert and tls.key goes through these steps,
// each recorded in the journal (tls.cert + ".rotation", written with
// internal/atomicfile: fsynced, then renamed, then the directory fsynced)
// before the step's effect is relied on:
//
//	requested    the new key is in tls.key + ".next" (0600); the CSR is out
//	issued       the checked certificate is in tls.cert + ".next" (0600)
//	provisioned  (modem TLS) the new set is on the modem beside the old one
//	switching    the uplink reconnects with the new set
//	committing   a publish was acknowledged with the new set: the .next
//	             files are renamed over tls.key and tls.cert
//
// Recover, at start, before anything reads the files, ends every rotation
// it finds: one in committing rolls forward (the renames are finished; the
// old modem files are orphans to delete), any earlier one rolls back (the
// .next files are removed; the new modem files are orphans). Either way the
// configured files are one consistent set, in use.
package rotate

import (
	"crypto"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/cellgate/cellgate/agent/certcheck"
	"github.com/cellgate/cellgate/agent/pki"
	"github.com/cellgate/cellgate/internal/atomicfile"
)

// State is a step of a rotation.
type State string

// The steps, in order.
const (
	StateRequested   State = "requested"
	StateIssued      State = "issued"
	StateProvisioned State = "provisioned"
	StateSwitching   State = "switching"
	StateCommitting  State = "committing"
)

// Files are the configured certificate and key, tls.cert and tls.key.
type Files struct {
	Cert string
	Key  string
}

// CertNext and KeyNext are where a rotation keeps the new set until it
// commits.
func (f Files) CertNext() string { return f.Cert + ".next" }
func (f Files) KeyNext() string  { return f.Key + ".next" }

// JournalPath is the rotation journal's file.
func (f Files) JournalPath() string { return f.Cert + ".rotation" }

// Journal is what a rotation in progress has done.
type Journal struct {
	State   State     `json:"state"`
	Started time.Time `json:"started"`
	// Trigger is why it began: renew_before, remote, local.
	Trigger string `json:"trigger"`
	// Serial is the new certificate's serial (hex), from issued on.
	Serial string `json:"serial,omitempty"`
	// NewModemFiles and OldModemFiles are the modem's file names of the
	// new and the old set that the other set does not share (modem TLS).
	NewModemFiles []string `json:"new_modem_files,omitempty"`
	OldModemFiles []string `json:"old_modem_files,omitempty"`
}

// LoadJournal returns the journal, or nil when no rotation is in progress.
func LoadJournal(f Files) (*Journal, error) {
	data, err := os.ReadFile(f.JournalPath())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("rotation journal: %w", err)
	}
	var j Journal
	if err := json.Unmarshal(data, &j); err != nil {
		return nil, fmt.Errorf("rotation journal %s: %w", f.JournalPath(), err)
	}
	return &j, nil
}

// Save records j durably (fsynced, renamed, directory fsynced).
func Save(f Files, j *Journal) error {
	data, err := json.MarshalIndent(j, "", "  ")
	if err != nil {
		return err
	}
	dir, name := filepath.Split(f.JournalPath())
	if err := atomicfile.Write(filepath.Clean(dir), name, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("rotation journal: %w", err)
	}
	return nil
}

// WriteNext writes data to path (a .next file), 0600, durably.
func WriteNext(path string, data []byte) error {
	dir, name := filepath.Split(path)
	return atomicfile.Write(filepath.Clean(dir), name, data, 0o600)
}

// Finish removes the journal and any .next file left: the rotation is
// over, committed or abandoned.
func Finish(f Files) error {
	var errs []error
	for _, p := range []string{f.CertNext(), f.KeyNext(), f.JournalPath()} {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	for _, d := range uniqueDirs(f) {
		if err := atomicfile.SyncDir(d); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Commit records committing, then renames the new key and certificate over
// the configured ones (key first; a crash between the two renames is
// finished by Recover). The journal stays until Finish.
func Commit(f Files, j *Journal) error {
	j.State = StateCommitting
	if err := Save(f, j); err != nil {
		return err
	}
	return finishRenames(f)
}

func finishRenames(f Files) error {
	for _, p := range [][2]string{{f.KeyNext(), f.Key}, {f.CertNext(), f.Cert}} {
		if err := os.Rename(p[0], p[1]); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("commit the rotation: %w", err)
		}
	}
	for _, d := range uniqueDirs(f) {
		if err := atomicfile.SyncDir(d); err != nil {
			return fmt.Errorf("commit the rotation: %w", err)
		}
	}
	return nil
}

func uniqueDirs(f Files) []string {
	a, b := filepath.Dir(f.Cert), filepath.Dir(f.Key)
	if a == b {
		return []string{a}
	}
	return []string{a, b}
}

// Recovery is what Recover did.
type Recovery struct {
	// Found is the journal found; nil when no rotation was in progress.
	Found *Journal
	// RolledForward says the new set was committed; otherwise a rotation
	// found was rolled back to the old set.
	RolledForward bool
	// OrphanModemFiles are files of the set not in use that may still be
	// on the modem: the caller deletes them once the plugin is up.
	OrphanModemFiles []string
}

// Recover ends a rotation an earlier run left, as the package comment
// says. Without a journal it only removes stray .next files.
func Recover(f Files) (Recovery, error) {
	j, err := LoadJournal(f)
	if err != nil {
		return Recovery{}, err
	}
	if j == nil {
		return Recovery{}, Finish(f)
	}
	r := Recovery{Found: j}
	if j.State == StateCommitting {
		if err := finishRenames(f); err != nil {
			return r, err
		}
		r.RolledForward, r.OrphanModemFiles = true, j.OldModemFiles
	} else {
		r.OrphanModemFiles = j.NewModemFiles
	}
	return r, Finish(f)
}

// ErrOtherKey marks an issued certificate for a key other than the one
// asked for: another request's, or an earlier rotation's still retained.
var ErrOtherKey = errors.New("the certificate is for another key")

// CheckIssued checks an issued certificate (PEM) for key with
// certcheck.VerifyIssued, the checks `cellgate config check` makes: it is
// for key's public key (ErrOtherKey otherwise), chains to a CA in roots
// (PEM, tls.ca) for client authentication, and is valid at now. It returns
// the parsed certificate.
func CheckIssued(certPEM []byte, key crypto.Signer, roots []byte, now time.Time) (*x509.Certificate, error) {
	chain, err := certcheck.ParseCertificatesPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("issued certificate: %w", err)
	}
	if len(chain) == 0 {
		return nil, errors.New("issued certificate: no CERTIFICATE PEM block")
	}
	if !pki.SamePublicKey(key.Public(), chain[0].PublicKey) {
		return chain[0], fmt.Errorf("issued certificate serial %x: %w", chain[0].SerialNumber, ErrOtherKey)
	}
	if len(roots) == 0 {
		return chain[0], errors.New("tls.ca is empty: an issued certificate is checked against tls.ca, set it to the CA that issues the gateways' certificates")
	}
	return certcheck.VerifyIssued(certPEM, key.Public(), roots, now)
}
