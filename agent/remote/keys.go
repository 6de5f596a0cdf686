package remote

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"

	"github.com/cellgate/cellgate/agent/config"
)

// The key files of `cellgate config keygen`: the private key as PKCS #8 in
// PEM ("PRIVATE KEY", what openssl genpkey -algorithm ed25519 writes and
// Python's cryptography loads), the public key as one line of base64 of
// its raw 32 bytes (what remote_config.trusted_keys holds).

// GenerateKey makes a new signing key.
func GenerateKey() (ed25519.PrivateKey, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	return priv, err
}

// MarshalPrivateKey renders key as a PEM PKCS #8 private key.
func MarshalPrivateKey(key ed25519.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ParsePrivateKey reads a PEM PKCS #8 Ed25519 private key.
func ParsePrivateKey(data []byte) (ed25519.PrivateKey, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, errors.New("not a PEM \"PRIVATE KEY\" (PKCS #8), as `cellgate config keygen` writes")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("PKCS #8: %w", err)
	}
	ek, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("a %T key, not Ed25519", k)
	}
	return ek, nil
}

// EncodePublicKey renders a public key as remote_config.trusted_keys holds it.
func EncodePublicKey(pub ed25519.PublicKey) string {
	return base64.StdEncoding.EncodeToString(pub)
}

// ParsePublicKeyFile reads a .pub file: the base64 key, surrounding
// blank space ignored.
func ParsePublicKeyFile(data []byte) (ed25519.PublicKey, error) {
	return config.ParsePublicKey(strings.TrimSpace(string(data)))
}
