package certcheck

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/cellgate/cellgate/sdk"
)

// readableByOthers are the permission bits that let group or others read.
const readableByOthers = 0o044

// ReadFile reads a credential file and says precisely why it cannot be
// used: missing, a directory or another non-regular file, not readable by
// this user, or, when secret is true, readable by group or others (unless
// allowReadable). Its errors start with the path. The refusal of a readable
// secret suggests the configuration's way to allow it,
// tls.allow_readable_key: true.
func ReadFile(path string, secret, allowReadable bool) ([]byte, error) {
	return readFile(path, secret, allowReadable, AllowReadableSetting)
}

// AllowReadableSetting is the configuration setting that lets the agent
// use a key or key password file group or others can read.
const AllowReadableSetting = "tls.allow_readable_key: true"

// readFile is ReadFile whose refusal of a readable secret suggests
// override as the way to allow it, or only chmod 600 when override is
// empty.
func readFile(path string, secret, allowReadable bool, override string) ([]byte, error) {
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("%s: no such file", path)
	case err != nil:
		return nil, fmt.Errorf("%s: %w", path, unwrapPath(err))
	case st.IsDir():
		return nil, fmt.Errorf("%s: is a directory, want a PEM file", path)
	case !st.Mode().IsRegular():
		return nil, fmt.Errorf("%s: is not a regular file (%s)", path, st.Mode().Type())
	case secret && !allowReadable && st.Mode().Perm()&readableByOthers != 0:
		hint := "chmod 600 it"
		if override != "" {
			hint += " or set " + override
		}
		return nil, fmt.Errorf("%s: mode %04o is readable by group/others; %s", path, st.Mode().Perm(), hint)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: cannot be read by this user (uid %d): %w", path, os.Getuid(), unwrapPath(err))
	}
	return data, nil
}

// unwrapPath drops the *fs.PathError wrapper, whose text repeats the path.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// ReadKeyPassword reads tls.key_password_file: the password is the file's
// content without one trailing newline (\n or \r\n). The file must be a
// regular file that group and others cannot read unless allowReadable (the
// refusal suggests AllowReadableSetting); an empty password is an error.
// Errors name the path, never the content.
func ReadKeyPassword(path string, allowReadable bool) (string, error) {
	return readKeyPassword(path, allowReadable, AllowReadableSetting)
}

// ReadStrictKeyPassword reads a key password file by ReadKeyPassword's
// rules for a caller that has no setting to allow a file group or others
// can read, such as a command-line flag: such a file is always refused, and
// the error suggests only chmod 600.
func ReadStrictKeyPassword(path string) (string, error) {
	return readKeyPassword(path, false, "")
}

func readKeyPassword(path string, allowReadable bool, override string) (string, error) {
	data, err := readFile(path, true, allowReadable, override)
	if err != nil {
		return "", err
	}
	pw := strings.TrimSuffix(strings.TrimSuffix(string(data), "\n"), "\r")
	if pw == "" {
		return "", fmt.Errorf("%s: is empty, want the key's password", path)
	}
	return pw, nil
}

// KeyPasswordError is a key that could not be decrypted: no password was
// given for an encrypted key (Missing), or the password does not decrypt
// it (Err wraps sdk.ErrKeyPassword).
type KeyPasswordError struct {
	Missing bool
	Err     error
}

func (e *KeyPasswordError) Error() string { return e.Err.Error() }
func (e *KeyPasswordError) Unwrap() error { return e.Err }

// ParsePrivateKeyPEM parses the private key of keyPEM: the first PEM block
// whose type ends in "PRIVATE KEY", as PKCS#8, PKCS#1 or SEC 1, decrypted
// with password when it is encrypted (sdk.DecryptKeyPEM). Errors say which
// block, by number and line, is wrong; a password problem is a
// *KeyPasswordError. password is ignored for a key that is not encrypted.
func ParsePrivateKeyPEM(keyPEM []byte, password string) (crypto.Signer, error) {
	block, n, line, err := firstKeyBlock(keyPEM)
	if err != nil {
		return nil, err
	}
	where := fmt.Sprintf("PEM block %d (%s, line %d)", n, block.Type, line)
	if sdk.KeyPEMEncrypted(pem.EncodeToMemory(block)) {
		if password == "" {
			return nil, &KeyPasswordError{Missing: true, Err: fmt.Errorf("%s is encrypted and no password was given", where)}
		}
		plain, err := sdk.DecryptKeyPEM(pem.EncodeToMemory(block), password)
		if errors.Is(err, sdk.ErrKeyPassword) {
			return nil, &KeyPasswordError{Err: fmt.Errorf("%s: %w", where, err)}
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		block, _ = pem.Decode(plain)
	}
	signer, err := parseKeyDER(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	return signer, nil
}

// firstKeyBlock returns the first PEM block of data whose type ends in
// "PRIVATE KEY", its 1-based number among the blocks and its line, or an
// error naming the block that cannot be decoded.
func firstKeyBlock(data []byte) (*pem.Block, int, int, error) {
	rest := data
	for n := 1; ; n++ {
		at := len(data) - len(rest)
		if i := bytes.Index(rest, []byte("-----BEGIN")); i >= 0 {
			at += i
		}
		line := 1 + bytes.Count(data[:at], []byte("\n"))
		var block *pem.Block
		block, rest = pem.Decode(rest)
		switch {
		case block == nil && bytes.Contains(rest, []byte("-----BEGIN")):
			return nil, 0, 0, fmt.Errorf("PEM block %d at byte %d (line %d) cannot be decoded (bad base64 or no END line)", n, at, line)
		case block == nil:
			return nil, 0, 0, errors.New("no PEM private key block found (want -----BEGIN PRIVATE KEY-----, as openssl writes)")
		case strings.HasSuffix(block.Type, "PRIVATE KEY"):
			return block, n, line, nil
		}
	}
}

func parseKeyDER(der []byte) (crypto.Signer, error) {
	if k, err := x509.ParsePKCS8PrivateKey(der); err == nil {
		if s, ok := k.(crypto.Signer); ok {
			return s, nil
		}
		return nil, fmt.Errorf("a %T cannot sign a TLS handshake", k)
	}
	if k, err := x509.ParsePKCS1PrivateKey(der); err == nil {
		return k, nil
	}
	if k, err := x509.ParseECPrivateKey(der); err == nil {
		return k, nil
	}
	return nil, errors.New("not a PKCS#8, PKCS#1 or SEC 1 private key")
}

// ParseCertificatesPEM parses every certificate of a PEM file, the leaf
// first; errors say which block, by number, line and byte, is wrong.
func ParseCertificatesPEM(data []byte) ([]*x509.Certificate, error) {
	certs, err := sdk.ParseCertificates("", data)
	var be *sdk.BundleError
	if errors.As(err, &be) {
		return nil, errors.New(be.Reason)
	}
	return certs, err
}

// MatchKey says whether pub is the public key of cert.
func MatchKey(cert *x509.Certificate, pub crypto.PublicKey) error {
	p, ok := cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !p.Equal(pub) {
		return fmt.Errorf("does not match the certificate %s (serial %s): the key belongs to another certificate", cert.Subject, cert.SerialNumber.Text(16))
	}
	return nil
}

// VerifyChain verifies chain (the leaf, then the intermediates as the
// certificate file carries them) against the CA certificates, for client
// authentication at now. A leaf outside its validity (which Check reports
// apart) is only checked for a signature by one of the others, so it is
// not reported twice; an expired intermediate or CA is reported.
func VerifyChain(chain, ca []*x509.Certificate, now time.Time) error {
	leaf := chain[0]
	if now.Before(leaf.NotBefore) || now.After(leaf.NotAfter) {
		// x509 refuses such a leaf before it looks for an issuer: check
		// the signature alone.
		for _, c := range append(chain[1:len(chain):len(chain)], ca...) {
			if leaf.CheckSignatureFrom(c) == nil {
				return nil
			}
		}
		return fmt.Errorf("certificate %s (issuer %s) does not chain to a CA in tls.ca", leaf.Subject, leaf.Issuer)
	}
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	for _, c := range ca {
		roots.AddCert(c)
	}
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	_, err := leaf.Verify(x509.VerifyOptions{
		Roots: roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	var ua x509.UnknownAuthorityError
	if errors.As(err, &ua) {
		return fmt.Errorf("certificate %s (issuer %s) does not chain to a CA in tls.ca", leaf.Subject, leaf.Issuer)
	}
	if err != nil {
		return fmt.Errorf("certificate %s does not verify against tls.ca: %w", leaf.Subject, err)
	}
	return nil
}

// VerifyIssued checks a newly issued client certificate before it is used:
// certPEM parses (leaf first, intermediates after), it is for pub (the new
// key), it chains to the CA certificates of caPEM for client
// authentication, and it is valid at now. Every problem found is in the
// error, joined.
func VerifyIssued(certPEM []byte, pub crypto.PublicKey, caPEM []byte, now time.Time) (*x509.Certificate, error) {
	chain, err := ParseCertificatesPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("issued certificate: %w", err)
	}
	ca, err := ParseCertificatesPEM(caPEM)
	if err != nil {
		return nil, fmt.Errorf("CA: %w", err)
	}
	leaf := chain[0]
	var errs []error
	if err := MatchKey(leaf, pub); err != nil {
		errs = append(errs, fmt.Errorf("issued certificate %w", err))
	}
	if err := VerifyChain(chain, ca, now); err != nil {
		errs = append(errs, err)
	}
	if now.Before(leaf.NotBefore) || now.After(leaf.NotAfter) {
		errs = append(errs, fmt.Errorf("issued certificate %s is valid from %s to %s, not now (%s)", leaf.Subject, day(leaf.NotBefore), day(leaf.NotAfter), day(now)))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return leaf, nil
}
