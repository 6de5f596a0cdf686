package conformance

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/cellgate/cellgate/sdk"
)

func checkProvision(ctx context.Context, f *fixture) (string, error) {
	if _, err := f.open(ctx); err != nil {
		return "", err
	}
	counter, counted := f.modem.(CommandCounter)
	r1, err := f.tr.Provision(ctx, f.bundle())
	if err != nil {
		return "", fmt.Errorf("first Provision: %w", err)
	}
	// A fresh emulator starts empty; a real modem may hold the files from
	// an earlier run already.
	switch {
	case f.cfg.Emulator != "" && len(r1.Downloaded) != 3, len(r1.Downloaded)+len(r1.Kept) != 3, r1.AuthMode != 2:
		return "", fmt.Errorf("first Provision = %+v, want 3 files stored and authmode 2", r1)
	}
	var writes int64
	if counted {
		writes = counter.CertificateWrites()
	}
	r2, err := f.tr.Provision(ctx, f.bundle())
	if err != nil {
		return "", fmt.Errorf("second Provision: %w", err)
	}
	if len(r2.Downloaded) != 0 || len(r2.Deleted) != 0 || len(r2.Kept) != 3 {
		return "", fmt.Errorf("second Provision = %+v, want nothing stored or deleted, 3 kept", r2)
	}
	if counted {
		if n := counter.CertificateWrites(); n != writes {
			return "", fmt.Errorf("second Provision wrote %d certificate files into the modem, want none", n-writes)
		}
	}
	if err := checkRotation(ctx, f, counter); err != nil {
		return "", err
	}
	detail := fmt.Sprintf("%d files stored (%d already there), then none stored or deleted, then a rotation stored 2 and deleted 2", len(r1.Downloaded), len(r1.Kept))
	if counted {
		detail += " after switching the profile"
	}
	if f.cfg.Server == nil {
		detail += "; the server saw the rotated certificate"
	}
	return detail, nil
}

// checkRotation rotates the client identity and checks what Provision
// reported, the order of the modem's commands (when counted) and, with a
// local server, that the server then sees the new certificate. Against a
// remote server the new identity comes from a throwaway CA the server
// does not know, so the server's view is not checked.
func checkRotation(ctx context.Context, f *fixture, counter CommandCounter) error {
	next, err := f.pki.NewClient("rotated client")
	if err != nil {
		return err
	}
	b := f.bundle()
	b.Cert, b.Key = next.CertPEM, next.KeyPEM
	if counter != nil {
		counter.ResetTrace()
	}
	r3, err := f.tr.Provision(ctx, b)
	if err != nil {
		return fmt.Errorf("rotation Provision: %w", err)
	}
	if len(r3.Downloaded) != 2 || len(r3.Deleted) != 2 || len(r3.Kept) != 1 {
		return fmt.Errorf("rotation Provision = %+v, want 2 stored (cert, key), 1 kept (CA), 2 deleted", r3)
	}
	if counter != nil {
		lastConfig, firstDelete := counter.RotationOrder()
		if lastConfig < 0 || firstDelete < 0 || firstDelete < lastConfig {
			return fmt.Errorf("old files deleted before the TLS profile was switched to the new ones (client key set at command %d, first delete at %d)", lastConfig, firstDelete)
		}
	}
	names, err := f.tr.ListCerts(ctx)
	if err != nil {
		return fmt.Errorf("ListCerts: %w", err)
	}
	want := append(slices.Clone(r3.Downloaded), r3.Kept...)
	if missing := absent(names, want); len(names) != 3 || len(missing) > 0 {
		return fmt.Errorf("after rotation the modem holds %v, want exactly the 3 current files %v", names, want)
	}
	if f.cfg.Server != nil {
		return nil
	}
	return serverSeesRotatedClient(ctx, f)
}

// absent returns the names of want that are not in have.
func absent(have, want []string) []string {
	var out []string
	for _, w := range want {
		if !slices.Contains(have, w) {
			out = append(out, w)
		}
	}
	return out
}

// serverSeesRotatedClient dials a mutual-TLS echo server and checks that
// the client certificate it sees is the rotated one.
func serverSeesRotatedClient(ctx context.Context, f *fixture) error {
	host, port, srv, err := f.goodServer()
	if err != nil {
		return err
	}
	sess, err := f.dial(ctx, host, port)
	if err != nil {
		return fmt.Errorf("after rotation: %w", err)
	}
	if err := roundTrip(ctx, sess, []byte("rotated\n")); err != nil {
		return fmt.Errorf("after rotation: %w", err)
	}
	select {
	case c := <-srv.Accepted():
		tc, ok := c.(*tls.Conn)
		if !ok {
			return fmt.Errorf("server connection is %T, want *tls.Conn", c)
		}
		if peers := tc.ConnectionState().PeerCertificates; len(peers) == 0 || peers[0].Subject.CommonName != "rotated client" {
			return errors.New("after rotation the server saw another client certificate than the rotated one")
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func checkBadBundle(ctx context.Context, f *fixture) (string, error) {
	if _, err := f.open(ctx); err != nil {
		return "", err
	}
	other, err := NewPKI(P256)
	if err != nil {
		return "", err
	}
	p := f.pki
	bad := []struct {
		name string
		b    sdk.Bundle
	}{
		{"key of another certificate", sdk.Bundle{CA: p.CA.CertPEM, Cert: p.Client.CertPEM, Key: other.Client.KeyPEM}},
		{"broken PEM", sdk.Bundle{CA: []byte("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")}},
		{"certificate without key", sdk.Bundle{CA: p.CA.CertPEM, Cert: p.Client.CertPEM}},
		{"no CA and not insecure", sdk.Bundle{Cert: p.Client.CertPEM, Key: p.Client.KeyPEM}},
	}
	if f.modem != nil {
		// A modem's certificate store limits a file's size; a host's does not.
		bad = append(bad, struct {
			name string
			b    sdk.Bundle
		}{"oversized CA", sdk.Bundle{CA: bytes.Repeat(p.CA.CertPEM, 40)}})
	}
	counter, counted := f.modem.(CommandCounter)
	var problems []error
	for _, c := range bad {
		var before int64
		if counted {
			before = counter.Commands()
		}
		pctx, cancel := context.WithTimeout(ctx, time.Minute)
		_, err := f.tr.Provision(pctx, c.b)
		cancel()
		var be *sdk.BundleError
		if !errors.As(err, &be) {
			problems = append(problems, fmt.Errorf("%s: Provision = %v, want *sdk.BundleError", c.name, err))
			continue
		}
		if counted {
			if after := counter.Commands(); after != before {
				problems = append(problems, fmt.Errorf("%s: refused, but %d commands reached the modem first", c.name, after-before))
			}
		}
	}
	if len(problems) > 0 {
		return "", errors.Join(problems...)
	}
	return fmt.Sprintf("%d broken bundles refused", len(bad)), nil
}

func checkListDelete(ctx context.Context, f *fixture) (string, error) {
	if _, err := f.open(ctx); err != nil {
		return "", err
	}
	r, err := f.tr.Provision(ctx, f.bundle())
	if err != nil {
		return "", fmt.Errorf("Provision: %w", err)
	}
	stored := append(slices.Clone(r.Downloaded), r.Kept...)
	if len(stored) == 0 {
		return "", fmt.Errorf("Provision = %+v, stored and kept nothing", r)
	}
	names, err := f.tr.ListCerts(ctx)
	if err != nil {
		return "", fmt.Errorf("ListCerts: %w", err)
	}
	if missing := absent(names, stored); len(missing) > 0 {
		return "", fmt.Errorf("ListCerts = %v, misses %v that Provision reported", names, missing)
	}
	// Every file stored is in use by the profile; a plugin may refuse to
	// delete it or delete it (and store it again at the next Provision).
	// Either way ListCerts must tell the truth afterwards.
	victim := stored[0]
	delErr := f.tr.DeleteCert(ctx, victim)
	if names, err = f.tr.ListCerts(ctx); err != nil {
		return "", fmt.Errorf("ListCerts after DeleteCert: %w", err)
	}
	if delErr != nil {
		if !slices.Contains(names, victim) {
			return "", fmt.Errorf("DeleteCert %s failed (%v), yet ListCerts no longer shows it: %v", victim, delErr, names)
		}
		return fmt.Sprintf("listed %d files; deleting %s, in use, was refused and it stayed: %v", len(stored), victim, delErr), nil
	}
	if slices.Contains(names, victim) {
		return "", fmt.Errorf("after DeleteCert %s, ListCerts still shows it: %v", victim, names)
	}
	again, err := f.tr.Provision(ctx, f.bundle())
	if err != nil {
		return "", fmt.Errorf("Provision after DeleteCert: %w", err)
	}
	if !slices.Equal(again.Downloaded, []string{victim}) {
		return "", fmt.Errorf("Provision after DeleteCert %s stored %v, want exactly that file again", victim, again.Downloaded)
	}
	return fmt.Sprintf("listed %d files, deleted %s, Provision stored it again", len(stored), victim), nil
}
