package modemsim

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/des"
	"crypto/pbkdf2"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/asn1"
	"errors"
	"hash"
)

// This is the module's own reading of an encrypted PKCS#8 key
// (EncryptedPrivateKeyInfo with PBES2, RFC 8018), which keypwd unlocks as
// it unlocks legacy PEM encryption. The drivers' side has its own
// (sdk.DecryptKeyPEM): modemsim shares no code with them, so that one
// misreading of the standard cannot pass in both (DESIGN.md).

type p8AlgID struct {
	OID    asn1.ObjectIdentifier
	Params asn1.RawValue `asn1:"optional"`
}

type p8Encrypted struct {
	Alg  p8AlgID
	Data []byte
}

type p8PBES2 struct {
	KDF    p8AlgID
	Scheme p8AlgID
}

type p8PBKDF2 struct {
	Salt   []byte
	Iter   int
	KeyLen int     `asn1:"optional"`
	PRF    p8AlgID `asn1:"optional"`
}

var (
	p8OIDPBES2  = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 13}
	p8OIDPBKDF2 = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 12}
)

// p8PRF maps the last arc of the RSADSI digestAlgorithm OIDs
// (1.2.840.113549.2.x) to the HMAC hash; 7 (SHA-1) is the default.
var p8PRF = map[int]func() hash.Hash{7: sha1.New, 8: sha256.New224, 9: sha256.New, 10: sha512.New384, 11: sha512.New}

// decryptPKCS8 returns the PrivateKeyInfo DER inside an encrypted PKCS#8
// key, or an error when pwd does not open it.
func decryptPKCS8(der []byte, pwd string) ([]byte, error) {
	var enc p8Encrypted
	var params p8PBES2
	var kdf p8PBKDF2
	if _, err := asn1.Unmarshal(der, &enc); err != nil || !enc.Alg.OID.Equal(p8OIDPBES2) {
		return nil, errors.New("encrypted PKCS#8 key: only PBES2 is supported")
	}
	if _, err := asn1.Unmarshal(enc.Alg.Params.FullBytes, &params); err != nil || !params.KDF.OID.Equal(p8OIDPBKDF2) {
		return nil, errors.New("encrypted PKCS#8 key: only PBKDF2 is supported")
	}
	if _, err := asn1.Unmarshal(params.KDF.Params.FullBytes, &kdf); err != nil || kdf.Iter < 1 || kdf.Iter > 10_000_000 {
		return nil, errors.New("encrypted PKCS#8 key: bad PBKDF2 parameters")
	}
	prf := sha1.New
	if o := kdf.PRF.OID; len(o) > 0 {
		if len(o) != 6 || !o[:5].Equal(asn1.ObjectIdentifier{1, 2, 840, 113549, 2}) || p8PRF[o[5]] == nil {
			return nil, errors.New("encrypted PKCS#8 key: unsupported PBKDF2 hash")
		}
		prf = p8PRF[o[5]]
	}
	var iv []byte
	if _, err := asn1.Unmarshal(params.Scheme.Params.FullBytes, &iv); err != nil {
		return nil, errors.New("encrypted PKCS#8 key: bad IV")
	}
	newBlock, keyLen := p8Cipher(params.Scheme.OID)
	if newBlock == nil {
		return nil, errors.New("encrypted PKCS#8 key: unsupported cipher")
	}
	key, err := pbkdf2.Key(prf, pwd, kdf.Salt, kdf.Iter, keyLen)
	if err != nil {
		return nil, err
	}
	blk, err := newBlock(key)
	if err != nil {
		return nil, err
	}
	n := len(enc.Data)
	if len(iv) != blk.BlockSize() || n == 0 || n%blk.BlockSize() != 0 {
		return nil, errors.New("encrypted PKCS#8 key: bad length")
	}
	out := make([]byte, n)
	cipher.NewCBCDecrypter(blk, iv).CryptBlocks(out, enc.Data)
	pad := int(out[n-1])
	if pad == 0 || pad > blk.BlockSize() {
		return nil, errors.New("encrypted PKCS#8 key: wrong keypwd")
	}
	for _, b := range out[n-pad:] {
		if int(b) != pad {
			return nil, errors.New("encrypted PKCS#8 key: wrong keypwd")
		}
	}
	return out[:n-pad], nil
}

// p8Cipher returns the CBC block cipher of a PBES2 encryption scheme and
// its key length: AES-128/192/256 (NIST arcs 2, 22, 42) or DES-EDE3.
func p8Cipher(oid asn1.ObjectIdentifier) (func([]byte) (cipher.Block, error), int) {
	aesArc := asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1}
	if len(oid) == 9 && oid[:8].Equal(aesArc) {
		switch oid[8] {
		case 2:
			return aes.NewCipher, 16
		case 22:
			return aes.NewCipher, 24
		case 42:
			return aes.NewCipher, 32
		}
	}
	if oid.Equal(asn1.ObjectIdentifier{1, 2, 840, 113549, 3, 7}) {
		return des.NewTripleDESCipher, 24
	}
	return nil, 0
}
