package rotate_test

import (
	"crypto"
	"crypto/x509/pkix"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cellgate/cellgate/agent/pki"
	"github.com/cellgate/cellgate/agent/rotate"
)

// files makes a configured set, "old", and a rotation's .next set, "new".
func files(t *testing.T) rotate.Files {
	t.Helper()
	dir := t.TempDir()
	f := rotate.Files{Cert: filepath.Join(dir, "client.pem"), Key: filepath.Join(dir, "client.key")}
	for p, data := range map[string]string{f.Cert: "old cert", f.Key: "old key"} {
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := rotate.WriteNext(f.KeyNext(), []byte("new key")); err != nil {
		t.Fatal(err)
	}
	if err := rotate.WriteNext(f.CertNext(), []byte("new cert")); err != nil {
		t.Fatal(err)
	}
	return f
}

func read(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func gone(t *testing.T, paths ...string) {
	t.Helper()
	for _, p := range paths {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still there (%v)", p, err)
		}
	}
}

func TestRecoverRollsBackEveryStepBeforeTheCommit(t *testing.T) {
	for _, s := range []rotate.State{rotate.StateRequested, rotate.StateIssued, rotate.StateProvisioned, rotate.StateSwitching} {
		t.Run(string(s), func(t *testing.T) {
			f := files(t)
			j := &rotate.Journal{State: s, Trigger: "local", NewModemFiles: []string{"cgcrt-new.pem"}, OldModemFiles: []string{"cgcrt-old.pem"}}
			if err := rotate.Save(f, j); err != nil {
				t.Fatal(err)
			}
			rec, err := rotate.Recover(f)
			if err != nil {
				t.Fatal(err)
			}
			if rec.RolledForward || rec.Found == nil || !slices.Equal(rec.OrphanModemFiles, j.NewModemFiles) {
				t.Fatalf("recovery %+v: want a rollback whose orphans are the new files", rec)
			}
			if read(t, f.Cert) != "old cert" || read(t, f.Key) != "old key" {
				t.Fatal("the configured set changed")
			}
			gone(t, f.CertNext(), f.KeyNext(), f.JournalPath())
		})
	}
}

func TestRecoverFinishesACommitCutBetweenItsRenames(t *testing.T) {
	f := files(t)
	j := &rotate.Journal{State: rotate.StateCommitting, OldModemFiles: []string{"cgcrt-old.pem"}}
	if err := rotate.Save(f, j); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(f.KeyNext(), f.Key); err != nil { // the first rename only
		t.Fatal(err)
	}
	rec, err := rotate.Recover(f)
	if err != nil {
		t.Fatal(err)
	}
	if !rec.RolledForward || !slices.Equal(rec.OrphanModemFiles, j.OldModemFiles) {
		t.Fatalf("recovery %+v: want a roll forward whose orphans are the old files", rec)
	}
	if read(t, f.Cert) != "new cert" || read(t, f.Key) != "new key" {
		t.Fatal("the new set is not the configured one")
	}
	gone(t, f.CertNext(), f.KeyNext(), f.JournalPath())
}

func TestRecoverWithoutAJournalRemovesStrayFiles(t *testing.T) {
	f := files(t)
	rec, err := rotate.Recover(f)
	if err != nil || rec.Found != nil {
		t.Fatalf("Recover: %+v, %v", rec, err)
	}
	gone(t, f.CertNext(), f.KeyNext())
	if fi, err := os.Stat(f.Key); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("configured key: %v %v", fi, err)
	}
}

func TestCheckIssued(t *testing.T) {
	ca, err := pki.Init(filepath.Join(t.TempDir(), "ca"), pki.InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	other, err := pki.Init(filepath.Join(t.TempDir(), "other"), pki.InitOptions{Name: "other"})
	if err != nil {
		t.Fatal(err)
	}
	key, _ := pki.NewKey("p256")
	otherKey, _ := pki.NewKey("p256")
	issue := func(c *pki.CA, k crypto.Signer) []byte {
		csr, err := pki.NewCSR(k, pkix.Name{CommonName: "gw"})
		if err != nil {
			t.Fatal(err)
		}
		p, _, err := c.Sign(pki.SignRequest{CSR: csr, DeviceID: "gw", Validity: 24 * time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := issue(ca, key)
	if _, err := rotate.CheckIssued(good, key, ca.CertPEM, time.Now()); err != nil {
		t.Fatalf("a good certificate: %v", err)
	}
	if _, err := rotate.CheckIssued(issue(ca, otherKey), key, ca.CertPEM, time.Now()); !errors.Is(err, rotate.ErrOtherKey) {
		t.Fatalf("another key's certificate: %v, want ErrOtherKey", err)
	}
	if _, err := rotate.CheckIssued(issue(other, key), key, ca.CertPEM, time.Now()); err == nil || !strings.Contains(err.Error(), "does not chain to a CA in tls.ca") {
		t.Fatalf("another CA's certificate: %v", err)
	}
	if _, err := rotate.CheckIssued(good, key, ca.CertPEM, time.Now().Add(48*time.Hour)); err == nil || !strings.Contains(err.Error(), "not now") {
		t.Fatalf("an expired certificate: %v", err)
	}
}
