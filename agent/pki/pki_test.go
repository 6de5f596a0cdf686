package pki_test

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cellgate/cellgate/agent/pki"
)

func newCA(t *testing.T) (*pki.CA, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "ca")
	ca, err := pki.Init(dir, pki.InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return ca, dir
}

func TestInitWritesAPrivateKeyAndNeverOverwrites(t *testing.T) {
	ca, dir := newCA(t)
	fi, err := os.Stat(filepath.Join(dir, pki.CAKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("ca.key mode %04o, want 0600", fi.Mode().Perm())
	}
	if !ca.Cert.IsCA || ca.Cert.Subject.CommonName != "cellgate fleet CA" {
		t.Fatalf("CA certificate: IsCA %v, CN %q", ca.Cert.IsCA, ca.Cert.Subject.CommonName)
	}
	if _, err := pki.Init(dir, pki.InitOptions{}); err == nil || !strings.Contains(err.Error(), "never overwritten") {
		t.Fatalf("second Init: %v, want a refusal", err)
	}
	loaded, err := pki.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !loaded.Cert.Equal(ca.Cert) {
		t.Fatal("Load returned another certificate")
	}
}

func TestLoadRefusesAReadableKey(t *testing.T) {
	_, dir := newCA(t)
	if err := os.Chmod(filepath.Join(dir, pki.CAKeyFile), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := pki.Load(dir); err == nil || !strings.Contains(err.Error(), "mode 0644") {
		t.Fatalf("Load: %v, want a refusal naming the mode", err)
	}
}

func csrFor(t *testing.T, kt, cn string) []byte {
	t.Helper()
	key, err := pki.NewKey(kt)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := pki.NewCSR(key, pkix.Name{CommonName: cn})
	if err != nil {
		t.Fatal(err)
	}
	return csr
}

func TestSignIssuesAClientCertificateForEachKeyType(t *testing.T) {
	ca, _ := newCA(t)
	now := time.Now().Truncate(time.Second) // certificates hold whole seconds
	for _, kt := range pki.KeyTypes {
		t.Run(kt, func(t *testing.T) {
			_, cert, err := ca.Sign(pki.SignRequest{CSR: csrFor(t, kt, "gw-1"), DeviceID: "gw-1", Validity: 48 * time.Hour, Now: now})
			if err != nil {
				t.Fatal(err)
			}
			pool := x509.NewCertPool()
			pool.AddCert(ca.Cert)
			if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
				t.Fatal(err)
			}
			if got := cert.NotAfter.Sub(now); got != 48*time.Hour {
				t.Fatalf("validity %s, want 48h", got)
			}
		})
	}
}

func TestSignRefuses(t *testing.T) {
	ca, _ := newCA(t)
	good := csrFor(t, "p256", "gw-1")
	block, _ := pem.Decode(good)
	bad := append([]byte(nil), block.Bytes...)
	bad[len(bad)-3] ^= 0xff // inside the signature
	tampered := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: bad})
	for _, tc := range []struct {
		name string
		req  pki.SignRequest
		want string
	}{
		{"a common name that is not the device id", pki.SignRequest{CSR: good, DeviceID: "gw-2"}, `CSR common name "gw-1" is not the device id "gw-2"`},
		{"a bad signature", pki.SignRequest{CSR: tampered, DeviceID: "gw-1"}, "signature"},
		{"junk", pki.SignRequest{CSR: []byte("hello"), DeviceID: "gw-1"}, "no PEM block"},
		{"a validity beyond the bound", pki.SignRequest{CSR: good, DeviceID: "gw-1", Validity: pki.MaxValidity + time.Hour}, "want up to"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := ca.Sign(tc.req); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Sign: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestParseValidity(t *testing.T) {
	for in, want := range map[string]time.Duration{"90d": 90 * 24 * time.Hour, "36h": 36 * time.Hour, "1d12h": 36 * time.Hour} {
		if got, err := pki.ParseValidity(in); err != nil || got != want {
			t.Errorf("ParseValidity(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0d", "-3d", "x", "1.5d", "1d-1h", "0s"} {
		if _, err := pki.ParseValidity(in); err == nil {
			t.Errorf("ParseValidity(%q) passed", in)
		}
	}
}
