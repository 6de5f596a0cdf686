package devpki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestServerAndClientCompleteAMutualHandshake(t *testing.T) {
	curves := map[KeyType]elliptic.Curve{P256: elliptic.P256(), P521: elliptic.P521()}
	for kt, curve := range curves {
		t.Run(curve.Params().Name, func(t *testing.T) {
			p, err := New(kt)
			if err != nil {
				t.Fatal(err)
			}
			for _, id := range []Identity{p.CA.Identity, p.Server, p.Client} {
				if got := id.Cert.PublicKey.(*ecdsa.PublicKey).Curve; got != curve {
					t.Errorf("%s has a %s key, want %s", id.Cert.Subject.CommonName, got.Params().Name, curve.Params().Name)
				}
			}
			sc, cc := net.Pipe()
			defer sc.Close()
			defer cc.Close()
			client := p.ClientTLS()
			client.ServerName = "127.0.0.1"
			done := make(chan error, 1)
			go func() { done <- tls.Server(sc, p.ServerTLS()).Handshake() }()
			if err := tls.Client(cc, client).Handshake(); err != nil {
				t.Fatalf("client handshake: %v", err)
			}
			if err := <-done; err != nil {
				t.Fatalf("server handshake: %v", err)
			}
		})
	}
}

func TestLeafHostsAndValidity(t *testing.T) {
	ca, err := NewCA(P256, "test CA")
	if err != nil {
		t.Fatal(err)
	}
	verify := func(id Identity, host string, at time.Time) error {
		_, err := id.Cert.Verify(x509.VerifyOptions{Roots: ca.CertPool(), DNSName: host, CurrentTime: at})
		return err
	}
	loopback, err := ca.Issue(Leaf{CommonName: "gw-1"})
	if err != nil {
		t.Fatal(err)
	}
	for _, host := range []string{"localhost", "127.0.0.1", "::1"} {
		if err := verify(loopback, host, time.Now()); err != nil {
			t.Errorf("default leaf for %s: %v", host, err)
		}
	}
	if loopback.Cert.Subject.CommonName != "gw-1" {
		t.Errorf("CN = %q, want gw-1", loopback.Cert.Subject.CommonName)
	}
	named, err := ca.Issue(Leaf{CommonName: "gateway.test", Hosts: []string{"gateway.test"},
		NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if err := named.Cert.VerifyHostname("gateway.test"); err != nil {
		t.Errorf("leaf for gateway.test: %v", err)
	}
	if named.Cert.VerifyHostname("127.0.0.1") == nil {
		t.Error("a leaf for gateway.test is valid for 127.0.0.1 too")
	}
	if verify(named, "gateway.test", time.Now()) == nil {
		t.Error("an expired leaf verified")
	}
	other, err := NewCA(P256, "other CA")
	if err != nil {
		t.Fatal(err)
	}
	stranger, err := other.Issue(Leaf{CommonName: "gw-1"})
	if err != nil {
		t.Fatal(err)
	}
	if verify(stranger, "127.0.0.1", time.Now()) == nil {
		t.Error("a leaf of another CA verified")
	}
}

func TestWriteFilesWritesPEMThatLoads(t *testing.T) {
	p, err := New(P256)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := p.WriteFiles(dir); err != nil {
		t.Fatal(err)
	}
	for _, pair := range [][2]string{{"ca.pem", "ca.key"}, {"server.pem", "server.key"}, {"client.pem", "client.key"}} {
		if _, err := tls.LoadX509KeyPair(filepath.Join(dir, pair[0]), filepath.Join(dir, pair[1])); err != nil {
			t.Errorf("%s and %s: %v", pair[0], pair[1], err)
		}
		fi, err := os.Stat(filepath.Join(dir, pair[1]))
		switch {
		case err != nil:
			t.Error(err)
		case pair[1] == "client.key" && fi.Mode().Perm() != 0o600:
			t.Errorf("client.key is %v, want 0600: the agent refuses a key others can read", fi.Mode())
		case pair[1] != "client.key" && fi.Mode().Perm()&0o004 == 0:
			t.Errorf("%s is not readable by other users (a broker's own user): %v", pair[1], fi.Mode())
		}
	}
	if err := p.WriteFiles(filepath.Join(dir, "missing")); err == nil {
		t.Error("WriteFiles into a missing directory succeeded")
	}
}
