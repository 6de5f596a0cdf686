package sdk_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cellgate/cellgate/internal/devpki"
	"github.com/cellgate/cellgate/sdk"
)

func TestCheckBundleNamesWhatIsWrong(t *testing.T) {
	p, err := devpki.New(devpki.P256)
	if err != nil {
		t.Fatal(err)
	}
	other, err := devpki.New(devpki.P256)
	if err != nil {
		t.Fatal(err)
	}
	good := sdk.Bundle{CA: p.CA.CertPEM, Cert: p.Client.CertPEM, Key: p.Client.KeyPEM}
	now := time.Now()
	if c, err := sdk.CheckBundle(good, now); err != nil || len(c.CA) != 1 || c.Cert == nil || c.KeyEncrypted {
		t.Fatalf("good bundle: %+v, %v", c, err)
	}
	for _, tc := range []struct {
		name  string
		b     sdk.Bundle
		now   time.Time
		field string
		says  string
	}{
		{"no CA", sdk.Bundle{Cert: good.Cert, Key: good.Key}, now, "ca", "no CA certificate"},
		{"junk CA", sdk.Bundle{CA: []byte("junk")}, now, "ca", "no PEM block found (byte 0)"},
		{"key block as CA", sdk.Bundle{CA: append(append([]byte{}, good.CA...), good.Key...)}, now, "ca", "PEM block 2 at byte"},
		{"expired CA", good, now.AddDate(50, 0, 0), "ca", "expired"},
		{"key without cert", sdk.Bundle{CA: good.CA, Key: good.Key}, now, "cert", "without its certificate"},
		{"cert without key", sdk.Bundle{CA: good.CA, Cert: good.Cert}, now, "key", "without its key"},
		{"another key", sdk.Bundle{CA: good.CA, Cert: good.Cert, Key: other.Client.KeyPEM}, now, "key", "does not match"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := sdk.CheckBundle(tc.b, tc.now)
			var be *sdk.BundleError
			if !errors.As(err, &be) || be.Field != tc.field || !strings.Contains(be.Reason, tc.says) {
				t.Fatalf("err = %v, want a BundleError on %s saying %q", err, tc.field, tc.says)
			}
		})
	}
	if _, err := sdk.CheckBundle(sdk.Bundle{Insecure: true}, now); err != nil {
		t.Fatalf("insecure bundle without CA: %v", err)
	}
}

func TestContentNameFollowsTheContent(t *testing.T) {
	a, b := sdk.ContentName("ca", []byte("one")), sdk.ContentName("ca", []byte("two"))
	if a == b || a != sdk.ContentName("ca", []byte("one")) || !strings.HasPrefix(a, "ca-") || !strings.HasSuffix(a, ".pem") || len(a) != len("ca-")+12+len(".pem") {
		t.Fatalf("names %q, %q", a, b)
	}
}
