package sdk

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"strings"
	"time"
)

// CheckedBundle is what CheckBundle learned of a bundle.
type CheckedBundle struct {
	// CA are the bundle's CA certificates; nil when it has none (Insecure).
	CA []*x509.Certificate
	// Cert is the client certificate (the first of Cert's blocks), nil when
	// the bundle has no client identity.
	Cert *x509.Certificate
	// KeyEncrypted says the key is a password-protected PEM block. With
	// Bundle.KeyPassword, CheckBundle decrypts it in memory to prove the
	// match with Cert (a wrong password is a BundleError on
	// "key_password"); a plugin whose modem takes the password passes it
	// on with the encrypted key, one that cannot use such a key refuses it.
	KeyEncrypted bool
}

// CheckBundle makes the checks every plugin owes a bundle before it touches
// a modem, so that a bad file is refused with a *BundleError naming the
// field and, for PEM, the block and byte offset, instead of failing at a
// handshake far from the cause: a CA unless Insecure, every PEM block a
// parsable certificate, none expired at now, a client certificate and key
// given together, and the key matching the certificate (for an encrypted
// key, only when its password is given; see CheckedBundle.KeyEncrypted).
// Limits of a modem (file sizes, profiles, TLS versions) are the plugin's
// to check.
func CheckBundle(b Bundle, now time.Time) (CheckedBundle, error) {
	var out CheckedBundle
	if len(b.CA) == 0 {
		if !b.Insecure {
			return out, &BundleError{Field: "ca", Reason: "no CA certificate: the server could not be verified (set insecure explicitly to skip verification)"}
		}
	} else {
		certs, err := ParseCertificates("ca", b.CA)
		if err != nil {
			return out, err
		}
		for i, c := range certs {
			if now.After(c.NotAfter) {
				return out, &BundleError{Field: "ca", Reason: fmt.Sprintf("certificate %d (%s) expired on %s", i+1, c.Subject, c.NotAfter.UTC().Format(time.RFC3339))}
			}
		}
		out.CA = certs
	}
	switch {
	case len(b.Cert) == 0 && len(b.Key) == 0:
		return out, nil
	case len(b.Cert) == 0:
		return out, &BundleError{Field: "cert", Reason: "a client key was given without its certificate"}
	case len(b.Key) == 0:
		return out, &BundleError{Field: "key", Reason: "a client certificate was given without its key"}
	}
	certs, err := ParseCertificates("cert", b.Cert)
	if err != nil {
		return out, err
	}
	out.Cert = certs[0]
	if now.After(out.Cert.NotAfter) {
		return out, &BundleError{Field: "cert", Reason: fmt.Sprintf("client certificate %s expired on %s", out.Cert.Subject, out.Cert.NotAfter.UTC().Format(time.RFC3339))}
	}
	block, _ := pem.Decode(b.Key)
	if block == nil {
		return out, &BundleError{Field: "key", Reason: "no PEM block found: not a PEM private key"}
	}
	key := b.Key
	if encryptedBlock(block) {
		out.KeyEncrypted = true
		if b.KeyPassword == "" {
			return out, nil
		}
		plain, err := DecryptKeyPEM(b.Key, b.KeyPassword)
		if err != nil {
			return out, &BundleError{Field: "key_password", Reason: err.Error()}
		}
		key = plain
	}
	if _, err := tls.X509KeyPair(b.Cert, key); err != nil {
		return out, &BundleError{Field: "key", Reason: fmt.Sprintf("the key does not match the client certificate or cannot be parsed: %v", err)}
	}
	return out, nil
}

// ParseCertificates decodes every CERTIFICATE block of data and reports the
// first problem as a *BundleError for field, with the block's number, line
// and byte offset, so an operator can find it in the file. Text between
// blocks is ignored, as OpenSSL does; a block that cannot be decoded (bad
// base64, no END line) is a problem.
func ParseCertificates(field string, data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	rest := data
	for {
		where := pemPosition(data, len(data)-len(rest))
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			switch {
			case bytes.Contains(rest, []byte("-----BEGIN")):
				return nil, &BundleError{Field: field, Reason: fmt.Sprintf("PEM block %d at %s cannot be decoded (bad base64 or no END line)", len(certs)+1, where)}
			case strings.TrimSpace(string(rest)) != "" && len(certs) == 0:
				return nil, &BundleError{Field: field, Reason: fmt.Sprintf("no PEM block found (byte %d): not a PEM certificate", len(data)-len(rest))}
			}
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, &BundleError{Field: field, Reason: fmt.Sprintf("PEM block %d at %s is %q, want CERTIFICATE", len(certs)+1, where, block.Type)}
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, &BundleError{Field: field, Reason: fmt.Sprintf("PEM block %d at %s: %v", len(certs)+1, where, err)}
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, &BundleError{Field: field, Reason: "no certificate in PEM data"}
	}
	return certs, nil
}

// pemPosition says where the next PEM block at or after offset begins, as
// "byte B (line L)" (0-based byte, 1-based line), or where the scan stands
// when no block follows.
func pemPosition(data []byte, offset int) string {
	if i := bytes.Index(data[offset:], []byte("-----BEGIN")); i >= 0 {
		offset += i
	}
	return fmt.Sprintf("byte %d (line %d)", offset, 1+bytes.Count(data[:offset], []byte("\n")))
}

// ContentName names a credential file after its content:
// "<prefix>-<12 hex digits of its SHA-256>.pem". Equal content gets an equal
// name, so provisioning twice finds the file already there, and a rotated
// certificate gets a new name beside the old one, which a plugin deletes
// only once nothing uses it.
func ContentName(prefix string, data []byte) string {
	sum := sha256.Sum256(data)
	return prefix + "-" + hex.EncodeToString(sum[:6]) + ".pem"
}
