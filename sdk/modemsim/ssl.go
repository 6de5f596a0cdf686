package modemsim

import (
	"bytes"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// sslContext is one AT+CSSLCFG context (0-9).
type sslContext struct {
	version         int // 0 SSL3.0, 1 TLS1.0, 2 TLS1.1, 3 TLS1.2, 4 all
	authMode        int // 0 none, 1 server, 2 server+client, 3 client only
	ignoreLocalTime int
	negotiateTime   int // seconds, handshake deadline
	caCert          string
	clientCert      string
	clientKey       string
	enableSNI       int
	keyPwd          string
	cipherSuites    int // one suite's code, or 0xFFFF for all
	checkHost       int // 1: verify the host name even without SNI (Quectel "checkhost")
}

// Cipher suite selectors AT+CSSLCFG="ciphersuites" accepts.
const (
	cipherRSAAES128SHA = 0x002F
	cipherAll          = 0xFFFF
)

func defaultSSLContext() sslContext {
	return sslContext{version: 4, authMode: 0, ignoreLocalTime: 1, negotiateTime: 300, enableSNI: 0, cipherSuites: cipherAll}
}

// csslcfgTest is the AT+CSSLCFG=? answer, verbatim from the manual.
var csslcfgTest = []string{
	`+CSSLCFG: "sslversion",(0-9),(0-4)`,
	`+CSSLCFG: "authmode",(0-9),(0-3)`,
	`+CSSLCFG: "ignorelocaltime",(0-9),(0,1)`,
	`+CSSLCFG: "negotiatetime",(0-9),(10-300)`,
	`+CSSLCFG: "cacert",(0-9),(5-128)`,
	`+CSSLCFG: "clientcert",(0-9),(5-128)`,
	`+CSSLCFG: "clientkey",(0-9),(5-128)`,
	`+CSSLCFG: "enableSNI",(0-9),(0,1)`,
	`+CSSLCFG: "keypwd",(0-9),(0-128)`,
	`+CSSLCFG: "ciphersuites",(0-9),(0x002F,0Xffff)`,
}

// csslcfgLine is one context in the read format; pwd is what to print for
// keypwd (the transcript gets a redacted copy).
func csslcfgLine(i int, c sslContext, pwd string) string {
	return fmt.Sprintf(`+CSSLCFG: %d,%d,%d,%d,%d,"%s","%s","%s",%d,"%s",0x%04X`,
		i, c.version, c.authMode, c.ignoreLocalTime, c.negotiateTime,
		c.caCert, c.clientCert, c.clientKey, c.enableSNI, pwd, c.cipherSuites)
}

// addCSSLCFGLine appends a context's read line, keeping the transcript
// free of the key password.
func addCSSLCFGLine(r *reply, i int, c sslContext) {
	r.lines = append(r.lines, csslcfgLine(i, c, c.keyPwd))
	red := c.keyPwd
	if red != "" {
		red = "<redacted>"
	}
	r.traceLines = append(r.traceLines, csslcfgLine(i, c, red))
}

// cmdCSSLCFG configures the SSL contexts. Keys match case-insensitively;
// every value is range-checked as AT+CSSLCFG=? states. File names are not
// required to exist yet: AT+CCHOPEN checks them (error 19).
func cmdCSSLCFG(m *Modem, c atCommand, r *reply) string {
	switch c.form {
	case formTest:
		for _, l := range csslcfgTest {
			if !m.cfg.NoKeyPwd || !strings.Contains(l, `"keypwd"`) {
				r.add(l)
			}
		}
		return ""
	case formRead:
		for i, ctx := range m.st.ssl {
			addCSSLCFGLine(r, i, ctx)
		}
		return ""
	case formSet:
		return m.setCSSLCFG(c.args, r)
	}
	return "ERROR"
}

// setCSSLCFG runs AT+CSSLCFG=<args>: <ctxindex> alone reads that context,
// "<key>",<ctxindex>,<value> changes one of its settings.
func (m *Modem) setCSSLCFG(argText string, r *reply) string {
	args, err := parseArgs(argText)
	if err != nil {
		return "ERROR"
	}
	if len(args) == 1 {
		i, ok := intIn(args[0], 0, 9)
		if !ok {
			return "ERROR"
		}
		addCSSLCFGLine(r, i, m.st.ssl[i])
		return ""
	}
	if len(args) != 3 || !args[0].quoted || (m.cfg.NoKeyPwd && strings.EqualFold(args[0].text, "keypwd")) {
		return "ERROR"
	}
	i, ok := intIn(args[1], 0, 9)
	if !ok {
		return "ERROR"
	}
	ctx, ok := m.st.ssl[i].withSetting(args[0].text, args[2])
	if !ok {
		return "ERROR"
	}
	m.st.ssl[i] = ctx
	return ""
}

// withSetting returns c with its setting key (any case) set to v. It
// reports false when the key is unknown or v is outside what AT+CSSLCFG=?
// states; c itself is never changed, so a rejected value leaves the
// context as it was.
func (c sslContext) withSetting(key string, v atArg) (sslContext, bool) {
	var ok bool
	switch key = strings.ToLower(key); key {
	case "sslversion":
		c.version, ok = intIn(v, 0, 4)
	case "authmode":
		c.authMode, ok = intIn(v, 0, 3)
	case "ignorelocaltime":
		c.ignoreLocalTime, ok = oneOf(v, 0, 1)
	case "negotiatetime":
		c.negotiateTime, ok = intIn(v, 10, 300)
	case "enablesni":
		c.enableSNI, ok = oneOf(v, 0, 1)
	case "cacert", "clientcert", "clientkey":
		var name string
		if name, ok = certNameArg(v); ok {
			switch key {
			case "cacert":
				c.caCert = name
			case "clientcert":
				c.clientCert = name
			default:
				c.clientKey = name
			}
		}
	case "keypwd":
		var pwd string
		pwd, ok = quotedString(v, 0, 128)
		if ok {
			c.keyPwd = pwd
		}
	case "ciphersuites":
		var cs int
		cs, ok = parseCipherSelector(v)
		if ok {
			c.cipherSuites = cs
		}
	}
	return c, ok
}

// parseCipherSelector accepts 0x002F/0XFFFF (any case of the hex digits)
// or the same values in decimal.
func parseCipherSelector(a atArg) (int, bool) {
	if !a.present || a.quoted {
		return 0, false
	}
	var v uint64
	var err error
	if t := strings.ToLower(a.text); strings.HasPrefix(t, "0x") {
		v, err = strconv.ParseUint(t[2:], 16, 32)
	} else {
		v, err = strconv.ParseUint(t, 10, 32)
	}
	if err != nil || (v != cipherRSAAES128SHA && v != cipherAll) {
		return 0, false
	}
	return int(v), true
}

// CCH <err> codes (reference §3).
const (
	cchOK           = 0
	cchPeerClosed   = 4
	cchTimeout      = 5
	cchInvalidParam = 8
	cchNetworkError = 9
	cchStateError   = 11
	cchDNS          = 13
	cchConnect      = 14
	cchHandshake    = 15
	cchNoNet        = 17
	cchSendTimeout  = 18
	cchNoCerts      = 19
)

// tlsMaterial is what an open needs from the certificate store.
type tlsMaterial struct {
	ca, cert, key []byte
}

// loadMaterial reads the files the context's authmode needs. A file that
// is not configured or not stored makes the open fail with 19.
func (m *Modem) loadMaterial(c sslContext) (tlsMaterial, error) {
	var mat tlsMaterial
	need := func(kind, name string) ([]byte, error) {
		if name == "" {
			return nil, fmt.Errorf("authmode %d needs %s, which is not set", c.authMode, kind)
		}
		b, err := m.store.read(name)
		if err != nil {
			return nil, fmt.Errorf("authmode %d needs %s %q: %w", c.authMode, kind, name, err)
		}
		return b, nil
	}
	var err error
	if c.authMode == 1 || c.authMode == 2 {
		if mat.ca, err = need("cacert", c.caCert); err != nil {
			return mat, err
		}
	}
	if c.authMode == 2 || c.authMode == 3 {
		if mat.cert, err = need("clientcert", c.clientCert); err != nil {
			return mat, err
		}
		if mat.key, err = need("clientkey", c.clientKey); err != nil {
			return mat, err
		}
	}
	return mat, nil
}

// buildTLSConfig turns a context into a crypto/tls client configuration
// that behaves like the module's embedded stack:
//   - versions per sslversion, never TLS 1.3 (the stack has none);
//   - authmode 1/2 verify the server chain against cacert, 2/3 present the
//     client certificate whatever CA list the server asks for;
//   - SNI only with enableSNI=1, and then the host name is verified too
//     (as with Quectel's checkhost=1, which sends no SNI);
//     with SNI off only the chain is verified (see README: UNSURE pick);
//   - ignorelocaltime=0 checks validity against the module's RTC (rtc),
//     ignorelocaltime=1 skips the validity-period check.
func buildTLSConfig(c sslContext, mat tlsMaterial, host string, rtc func() time.Time) (*tls.Config, error) {
	cfg := &tls.Config{
		// Verification is done below per authmode, on the module's terms.
		InsecureSkipVerify: true,
		// The module's clock, not the host's: crypto/tls reads it for
		// whatever is time-bound in a handshake, and VerifyConnection checks
		// validity periods at the same clock (so a clock jump moves both).
		Time: rtc,
	}
	switch c.version {
	case 1:
		cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS10, tls.VersionTLS10
	case 2:
		cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS11, tls.VersionTLS11
	case 3:
		cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
	case 4:
		cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS10, tls.VersionTLS12
	default:
		return nil, errors.New("sslversion 0 (SSL 3.0) cannot be negotiated: no peer or library supports it")
	}
	if c.cipherSuites == cipherAll {
		cfg.CipherSuites = allCipherSuites()
	} else {
		// One suite by its IANA code (AT+CSSLCFG allows only 0x002F); a
		// code Go does not implement leaves nothing to offer and the
		// handshake fails.
		cfg.CipherSuites = []uint16{uint16(c.cipherSuites)}
	}
	if c.enableSNI == 1 && net.ParseIP(host) == nil {
		cfg.ServerName = host
	}
	if c.authMode == 2 || c.authMode == 3 {
		cert, err := loadClientCertificate(mat.cert, mat.key, c.keyPwd)
		if err != nil {
			return nil, err
		}
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return cert, nil
		}
	}
	if c.authMode == 1 || c.authMode == 2 {
		roots, err := parseCertificates(mat.ca)
		if err != nil {
			return nil, fmt.Errorf("cacert %q: %w", c.caCert, err)
		}
		dnsName := ""
		if c.enableSNI == 1 || c.checkHost == 1 {
			dnsName = host
		}
		ignoreTime := c.ignoreLocalTime == 1
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			return verifyServerChain(cs.PeerCertificates, roots, dnsName, cfg.Time, ignoreTime)
		}
	}
	return cfg, nil
}

// allCipherSuites is "0xFFFF, support all": every TLS 1.0-1.2 suite Go
// implements except RC4, including the RSA key exchange suites that Go
// leaves out by default but embedded stacks offer.
func allCipherSuites() []uint16 {
	var ids []uint16
	for _, s := range tls.CipherSuites() {
		ids = append(ids, s.ID)
	}
	for _, s := range tls.InsecureCipherSuites() {
		if !strings.Contains(s.Name, "RC4") {
			ids = append(ids, s.ID)
		}
	}
	return ids
}

// verifyServerChain checks the server's chain against roots at the
// module's clock. With ignoreTime it checks the same things except the
// validity periods: signatures from the leaf up to a certificate of the
// cacert file (each issuer a CA), the leaf's extended key usage and, with
// SNI on, the host name.
func verifyServerChain(peer []*x509.Certificate, roots []*x509.Certificate, dnsName string, rtc func() time.Time, ignoreTime bool) error {
	if len(peer) == 0 {
		return errors.New("server sent no certificate")
	}
	if ignoreTime {
		return verifyIgnoringTime(peer, roots, dnsName)
	}
	pool := x509.NewCertPool()
	for _, r := range roots {
		pool.AddCert(r)
	}
	inter := x509.NewCertPool()
	for _, c := range peer[1:] {
		inter.AddCert(c)
	}
	_, err := peer[0].Verify(x509.VerifyOptions{
		Roots:         pool,
		Intermediates: inter,
		DNSName:       dnsName,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		CurrentTime:   rtc(),
	})
	return err
}

// maxChainDepth bounds the issuer walk, as embedded stacks do.
const maxChainDepth = 10

func verifyIgnoringTime(peer []*x509.Certificate, roots []*x509.Certificate, dnsName string) error {
	leaf := peer[0]
	if len(leaf.ExtKeyUsage) > 0 {
		ok := false
		for _, u := range leaf.ExtKeyUsage {
			ok = ok || u == x509.ExtKeyUsageServerAuth || u == x509.ExtKeyUsageAny
		}
		if !ok {
			return errors.New("server certificate is not for server authentication")
		}
	}
	if dnsName != "" {
		if err := leaf.VerifyHostname(dnsName); err != nil {
			return err
		}
	}
	cur := leaf
	for depth := 0; depth < maxChainDepth; depth++ {
		for _, r := range roots {
			if bytes.Equal(cur.RawIssuer, r.RawSubject) && cur.CheckSignatureFrom(r) == nil {
				return nil
			}
		}
		var next *x509.Certificate
		for _, c := range peer[1:] {
			if c != cur && bytes.Equal(cur.RawIssuer, c.RawSubject) && cur.CheckSignatureFrom(c) == nil {
				next = c
				break
			}
		}
		if next == nil {
			return x509.UnknownAuthorityError{Cert: cur}
		}
		cur = next
	}
	return errors.New("certificate chain is too long")
}

func isPEM(b []byte) bool { return bytes.Contains(b, []byte("-----BEGIN ")) }

// parseCertificates reads PEM (any number of CERTIFICATE blocks) or DER.
func parseCertificates(b []byte) ([]*x509.Certificate, error) {
	if !isPEM(b) {
		certs, err := x509.ParseCertificates(b)
		if err != nil {
			return nil, fmt.Errorf("parse DER certificate: %w", err)
		}
		return certs, nil
	}
	var certs []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse PEM certificate: %w", err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("no CERTIFICATE block in PEM file")
	}
	return certs, nil
}

// parsePrivateKey reads a PKCS#8, PKCS#1 or SEC 1 key, PEM or DER. An
// encrypted key, PKCS#8 (ENCRYPTED PRIVATE KEY, PBES2: pkcs8.go) or legacy
// PEM (Proc-Type: 4,ENCRYPTED), is decrypted with keypwd.
func parsePrivateKey(b []byte, pwd string) (crypto.Signer, error) {
	der := b
	if isPEM(b) {
		var blk *pem.Block
		rest := b
		for {
			blk, rest = pem.Decode(rest)
			if blk == nil {
				return nil, errors.New("no PRIVATE KEY block in PEM file")
			}
			if strings.HasSuffix(blk.Type, "PRIVATE KEY") {
				break
			}
		}
		der = blk.Bytes
		if blk.Type == "ENCRYPTED PRIVATE KEY" {
			if pwd == "" {
				return nil, errors.New("private key is encrypted and keypwd is not set")
			}
			var err error
			if der, err = decryptPKCS8(blk.Bytes, pwd); err != nil {
				return nil, fmt.Errorf("decrypt private key with keypwd: %w", err)
			}
		}
		// Legacy PEM encryption is deprecated in Go but it is what keypwd
		// unlocks on the module.
		if x509.IsEncryptedPEMBlock(blk) {
			if pwd == "" {
				return nil, errors.New("private key is encrypted and keypwd is not set")
			}
			var err error
			der, err = x509.DecryptPEMBlock(blk, []byte(pwd))
			if err != nil {
				return nil, fmt.Errorf("decrypt private key with keypwd: %w", err)
			}
		}
	}
	if k, err := x509.ParsePKCS8PrivateKey(der); err == nil {
		if s, ok := k.(crypto.Signer); ok {
			return s, nil
		}
		return nil, errors.New("PKCS#8 key is not a signing key")
	}
	if k, err := x509.ParsePKCS1PrivateKey(der); err == nil {
		return k, nil
	}
	if k, err := x509.ParseECPrivateKey(der); err == nil {
		return k, nil
	}
	return nil, errors.New("private key is neither PKCS#8, PKCS#1 nor SEC 1")
}

// loadClientCertificate pairs the client certificate chain with its key.
func loadClientCertificate(certFile, keyFile []byte, pwd string) (*tls.Certificate, error) {
	certs, err := parseCertificates(certFile)
	if err != nil {
		return nil, fmt.Errorf("clientcert: %w", err)
	}
	key, err := parsePrivateKey(keyFile, pwd)
	if err != nil {
		return nil, fmt.Errorf("clientkey: %w", err)
	}
	pub, ok := certs[0].PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(key.Public()) {
		return nil, errors.New("clientkey does not match clientcert")
	}
	out := &tls.Certificate{PrivateKey: key, Leaf: certs[0]}
	for _, c := range certs {
		out.Certificate = append(out.Certificate, c.Raw)
	}
	return out, nil
}
