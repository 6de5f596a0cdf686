package sdk

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/des"
	"crypto/pbkdf2"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"hash"
)

// ErrKeyPassword is wrapped by DecryptKeyPEM's error when the password does
// not decrypt the key: it is wrong, or the key is damaged (CBC cannot tell
// the two apart). The error never contains the password.
var ErrKeyPassword = errors.New("the key password does not decrypt the private key (wrong password, or a damaged key)")

// PKCS#8 "ENCRYPTED PRIVATE KEY" is the PEM type of RFC 5958's
// EncryptedPrivateKeyInfo, what `openssl genpkey -aes256` and `openssl
// pkcs8 -topk8 -v2 aes256` write.
const pemEncryptedPKCS8 = "ENCRYPTED PRIVATE KEY"

// maxPBKDF2Iterations bounds the work a key file can ask for: OpenSSL
// writes 2048 (1.x) or 2048-600000 (3.x); ten million is minutes on a
// gateway and more is an attack on it.
const maxPBKDF2Iterations = 10_000_000

// KeyPEMEncrypted reports whether the first PEM block of keyPEM is an
// encrypted private key: PKCS#8 (ENCRYPTED PRIVATE KEY) or legacy PEM
// encryption (Proc-Type: 4,ENCRYPTED). It is false for anything else,
// including data that is not PEM.
func KeyPEMEncrypted(keyPEM []byte) bool {
	block, _ := pem.Decode(keyPEM)
	return block != nil && encryptedBlock(block)
}

func encryptedBlock(b *pem.Block) bool {
	return b.Type == pemEncryptedPKCS8 || b.Headers["Proc-Type"] == "4,ENCRYPTED"
}

// DecryptKeyPEM returns keyPEM's private key unencrypted, as PEM, for
// tls.X509KeyPair or a modem that cannot take a password. An encrypted
// PKCS#8 key (PBES2 with PBKDF2 and AES-CBC or 3DES-CBC) comes back as a
// "PRIVATE KEY" block; a legacy encrypted PEM key as its own type (RSA or
// EC PRIVATE KEY) without the encryption headers. A key that is not
// encrypted is returned as it is, whatever password is given.
//
// A wrong password is an error wrapping ErrKeyPassword; an encryption
// scheme it does not implement (scrypt, PBES1) is named in the error. The
// password never appears in an error. The caller should clear nothing: Go
// strings cannot be cleared, so keep the result in memory no longer than
// needed and never write it out.
func DecryptKeyPEM(keyPEM []byte, password string) ([]byte, error) {
	block, _ := pem.Decode(keyPEM)
	if block == nil {
		return nil, errors.New("no PEM block found: not a PEM private key")
	}
	if !encryptedBlock(block) {
		return keyPEM, nil
	}
	if password == "" {
		return nil, errors.New("the private key is encrypted and no key password was given")
	}
	if block.Type == pemEncryptedPKCS8 {
		der, err := decryptPKCS8(block.Bytes, []byte(password))
		if err != nil {
			return nil, err
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
	}
	der, err := decryptLegacyPEM(block, []byte(password))
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: block.Type, Bytes: der}), nil
}

// decryptLegacyPEM is the one place cellgate uses x509.DecryptPEMBlock.
// It is deprecated because legacy PEM encryption (RFC 1423) has no
// integrity check, so a wrong password can go unnoticed; it stays because
// OpenSSL 1.x and many provisioning tools still write "Proc-Type:
// 4,ENCRYPTED" keys and SIMCom modules' keypwd accepts them. The parse
// after it is what catches most wrong passwords.
func decryptLegacyPEM(block *pem.Block, password []byte) ([]byte, error) {
	//lint:ignore SA1019 see above: legacy encrypted keys exist in the field.
	der, err := x509.DecryptPEMBlock(block, password) //nolint:staticcheck // see above
	if errors.Is(err, x509.IncorrectPasswordError) {
		return nil, fmt.Errorf("legacy PEM key (%s): %w", block.Headers["DEK-Info"], ErrKeyPassword)
	}
	if err != nil {
		return nil, fmt.Errorf("legacy PEM key: %w", err)
	}
	if !parsesAsKey(der) {
		return nil, fmt.Errorf("legacy PEM key (%s): %w", block.Headers["DEK-Info"], ErrKeyPassword)
	}
	return der, nil
}

func parsesAsKey(der []byte) bool {
	if _, err := x509.ParsePKCS8PrivateKey(der); err == nil {
		return true
	}
	if _, err := x509.ParsePKCS1PrivateKey(der); err == nil {
		return true
	}
	_, err := x509.ParseECPrivateKey(der)
	return err == nil
}

// The ASN.1 of RFC 8018 (PKCS #5 v2.1) and RFC 5958.
type encryptedPrivateKeyInfo struct {
	Algorithm     algorithmIdentifier
	EncryptedData []byte
}

type algorithmIdentifier struct {
	Algorithm  asn1.ObjectIdentifier
	Parameters asn1.RawValue `asn1:"optional"`
}

type pbes2Params struct {
	KeyDerivationFunc algorithmIdentifier
	EncryptionScheme  algorithmIdentifier
}

type pbkdf2Params struct {
	Salt           []byte
	IterationCount int
	KeyLength      int                 `asn1:"optional"`
	PRF            algorithmIdentifier `asn1:"optional"`
}

var (
	oidPBES2  = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 13}
	oidPBKDF2 = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 12}
	oidScrypt = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 11591, 4, 11}
)

// pbkdf2PRFs are the PBKDF2 pseudo-random functions by OID (RFC 8018
// B.1.1-B.1.2); hmacWithSHA1 is the default when none is named.
var pbkdf2PRFs = []struct {
	oid  asn1.ObjectIdentifier
	hash func() hash.Hash
}{
	{asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 7}, sha1.New},
	{asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 8}, sha256.New224},
	{asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 9}, sha256.New},
	{asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 10}, sha512.New384},
	{asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 11}, sha512.New},
}

// pbes2Ciphers are the CBC encryption schemes by OID (RFC 8018 B.2,
// RFC 3565).
var pbes2Ciphers = []pbes2CipherSpec{
	{asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 2}, "AES-128-CBC", 16, aes.NewCipher},
	{asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 22}, "AES-192-CBC", 24, aes.NewCipher},
	{asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 42}, "AES-256-CBC", 32, aes.NewCipher},
	{asn1.ObjectIdentifier{1, 2, 840, 113549, 3, 7}, "DES-EDE3-CBC", 24, des.NewTripleDESCipher},
}

// decryptPKCS8 decrypts an EncryptedPrivateKeyInfo with PBES2 and returns
// the PKCS#8 PrivateKeyInfo DER inside.
func decryptPKCS8(der, password []byte) ([]byte, error) {
	var info encryptedPrivateKeyInfo
	if rest, err := asn1.Unmarshal(der, &info); err != nil || len(rest) != 0 {
		return nil, errors.New("encrypted PKCS#8 key: not an EncryptedPrivateKeyInfo structure")
	}
	if !info.Algorithm.Algorithm.Equal(oidPBES2) {
		return nil, fmt.Errorf("encrypted PKCS#8 key: scheme %v is not supported (want PBES2, as openssl pkcs8 -topk8 -v2 aes256 writes)", info.Algorithm.Algorithm)
	}
	var params pbes2Params
	if _, err := asn1.Unmarshal(info.Algorithm.Parameters.FullBytes, &params); err != nil {
		return nil, errors.New("encrypted PKCS#8 key: malformed PBES2 parameters")
	}
	ciph, iv, err := pbes2Cipher(params.EncryptionScheme)
	if err != nil {
		return nil, err
	}
	key, err := pbes2Key(params.KeyDerivationFunc, password, ciph.keyLen)
	if err != nil {
		return nil, err
	}
	blk, err := ciph.block(key)
	if err != nil {
		return nil, fmt.Errorf("encrypted PKCS#8 key: %s: %w", ciph.name, err)
	}
	data := info.EncryptedData
	if len(iv) != blk.BlockSize() || len(data) == 0 || len(data)%blk.BlockSize() != 0 {
		return nil, fmt.Errorf("encrypted PKCS#8 key: %s data or IV has the wrong length", ciph.name)
	}
	plain := make([]byte, len(data))
	cipher.NewCBCDecrypter(blk, iv).CryptBlocks(plain, data)
	plain, ok := unpad(plain, blk.BlockSize())
	if !ok {
		return nil, fmt.Errorf("encrypted PKCS#8 key (%s): %w", ciph.name, ErrKeyPassword)
	}
	if _, err := x509.ParsePKCS8PrivateKey(plain); err != nil {
		return nil, fmt.Errorf("encrypted PKCS#8 key (%s): %w", ciph.name, ErrKeyPassword)
	}
	return plain, nil
}

// pbes2CipherSpec is one PBES2 encryption scheme.
type pbes2CipherSpec struct {
	oid    asn1.ObjectIdentifier
	name   string
	keyLen int
	block  func([]byte) (cipher.Block, error)
}

func pbes2Cipher(scheme algorithmIdentifier) (pbes2CipherSpec, []byte, error) {
	for _, c := range pbes2Ciphers {
		if scheme.Algorithm.Equal(c.oid) {
			var iv []byte
			if _, err := asn1.Unmarshal(scheme.Parameters.FullBytes, &iv); err != nil {
				return c, nil, fmt.Errorf("encrypted PKCS#8 key: %s: malformed IV", c.name)
			}
			return c, iv, nil
		}
	}
	return pbes2CipherSpec{}, nil, fmt.Errorf("encrypted PKCS#8 key: cipher %v is not supported (want AES-128/192/256-CBC or DES-EDE3-CBC)", scheme.Algorithm)
}

func pbes2Key(kdf algorithmIdentifier, password []byte, keyLen int) ([]byte, error) {
	if kdf.Algorithm.Equal(oidScrypt) {
		return nil, errors.New("encrypted PKCS#8 key: scrypt key derivation is not supported (re-encrypt with openssl pkcs8 -topk8 -v2 aes256, which uses PBKDF2)")
	}
	if !kdf.Algorithm.Equal(oidPBKDF2) {
		return nil, fmt.Errorf("encrypted PKCS#8 key: key derivation %v is not supported (want PBKDF2)", kdf.Algorithm)
	}
	var p pbkdf2Params
	if _, err := asn1.Unmarshal(kdf.Parameters.FullBytes, &p); err != nil {
		return nil, errors.New("encrypted PKCS#8 key: malformed PBKDF2 parameters")
	}
	if p.IterationCount < 1 || p.IterationCount > maxPBKDF2Iterations {
		return nil, fmt.Errorf("encrypted PKCS#8 key: PBKDF2 iteration count %d is out of range (want 1 to %d)", p.IterationCount, maxPBKDF2Iterations)
	}
	if p.KeyLength != 0 && p.KeyLength != keyLen {
		return nil, fmt.Errorf("encrypted PKCS#8 key: PBKDF2 key length %d does not fit the cipher's %d", p.KeyLength, keyLen)
	}
	prf := sha1.New
	if len(p.PRF.Algorithm) > 0 {
		prf = nil
		for _, h := range pbkdf2PRFs {
			if p.PRF.Algorithm.Equal(h.oid) {
				prf = h.hash
			}
		}
		if prf == nil {
			return nil, fmt.Errorf("encrypted PKCS#8 key: PBKDF2 function %v is not supported (want HMAC-SHA1/224/256/384/512)", p.PRF.Algorithm)
		}
	}
	key, err := pbkdf2.Key(prf, string(password), p.Salt, p.IterationCount, keyLen)
	if err != nil {
		return nil, fmt.Errorf("encrypted PKCS#8 key: PBKDF2: %w", err)
	}
	return key, nil
}

// unpad removes PKCS#7 padding, reporting false when it is not valid: with
// CBC, the usual sign of a wrong password.
func unpad(b []byte, size int) ([]byte, bool) {
	if len(b) == 0 {
		return nil, false
	}
	n := int(b[len(b)-1])
	if n == 0 || n > size || n > len(b) {
		return nil, false
	}
	if !bytes.Equal(b[len(b)-n:], bytes.Repeat([]byte{byte(n)}, n)) {
		return nil, false
	}
	return b[:len(b)-n], true
}
