package config

import (
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/cellgate/cellgate/internal/redact"
	"github.com/cellgate/cellgate/sdk"
)

// validator checks the decoded configuration's values and the rules that
// span keys. Its problems go to the loader, located by the origin of the
// value each is about.
type validator struct {
	ld       *loader
	warnings []Warning
}

// fail reports a problem with the value at path. about lists the other
// paths the problem depends on: when one of them lost its value in some
// layer to an unknown-key or type problem, the lower layer's value took its
// place, and a problem built on that is a consequence, not news. A problem
// with the value at path itself is always real, wherever it came from.
func (v *validator) fail(path string, about []string, format string, args ...any) {
	if v.lostValue(about...) {
		return
	}
	v.ld.add(v.ld.locate(path), path, format, args...)
}

// lostValue reports whether a value at one of paths, or at a section
// holding it, was dropped from a layer for a problem already reported.
func (v *validator) lostValue(paths ...string) bool {
	for _, p := range paths {
		for q := p; q != ""; q = parentPath(q) {
			if v.ld.bad[q] {
				return true
			}
		}
	}
	return false
}

func (v *validator) failf(path, format string, args ...any) { v.fail(path, nil, format, args...) }

func (v *validator) warn(path, format string, args ...any) {
	loc := v.ld.locate(path)
	v.warnings = append(v.warnings, Warning{Path: path, File: loc.file, Line: loc.line, Source: loc.source, Message: fmt.Sprintf(format, args...)})
}

// required reports a missing value, unless an unknown key was already
// reported as a likely misspelling of this one.
func (v *validator) required(path, hint string) {
	if v.ld.suggested[path] || v.lostValue(path) {
		return
	}
	v.failf(path, "is required; %s", hint)
}

func (v *validator) oneOf(path, value string, allowed ...string) {
	if !slices.Contains(allowed, value) {
		v.failf(path, "%q is not one of %s", value, orList(allowed))
	}
}

func orList(items []string) string {
	switch len(items) {
	case 1:
		return items[0]
	case 2:
		return items[0] + " or " + items[1]
	}
	return strings.Join(items[:len(items)-1], ", ") + " or " + items[len(items)-1]
}

var (
	deviceIDRE   = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)
	sha256RE     = regexp.MustCompile(`^[0-9a-fA-F]{64}$`)
	apnRE        = regexp.MustCompile(`^[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*$`)
	optionNameRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	hostLabelRE  = regexp.MustCompile(`^[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$`)
	placeRE      = regexp.MustCompile(`\{[^{}]*\}`)
)

// standardBauds are the rates SIMCom modules accept with AT+IPR and Linux
// serial drivers can set.
var standardBauds = []int{300, 600, 1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600, 3000000, 3200000, 3686400, 4000000}

func (v *validator) validate(c *Config) {
	switch {
	case c.DeviceID == "":
		v.required("device_id", "set it in the file, as "+envName("device_id")+" or with --device-id")
	case !deviceIDRE.MatchString(c.DeviceID):
		v.failf("device_id", "%q is not a device ID (want 1 to 64 letters, digits, '.', '_' or '-')", c.DeviceID)
	}
	for path, value := range map[string]string{
		"modem.port": c.Modem.Port, "plugins.dir": c.Plugins.Dir, "spool.dir": c.Spool.Dir,
		"tls.ca": c.TLS.CA, "tls.cert": c.TLS.Cert, "tls.key": c.TLS.Key, "remote_config.dir": c.RemoteConfig.Dir,
		"tls.key_password_file": c.TLS.KeyPasswordFile, "status.token_file": c.Status.TokenFile,
	} {
		if strings.IndexFunc(value, unicode.IsControl) >= 0 {
			v.failf(path, "%s contains a control character; a path cannot", show(value))
		}
	}
	v.modem(c.Modem)
	v.plugins(c.Plugins, c.Modem.Model)
	v.tls(c.TLS)
	v.inputs(c.Inputs)
	v.spool(c.Spool)
	v.uplink(c.Uplink)
	v.oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error")
	v.oneOf("log.format", c.Log.Format, "text", "json")
	v.statusListener(c.Status)
	if c.Health.MaxAckAge < 10*time.Second || c.Health.MaxAckAge > 24*time.Hour {
		v.failf("health.max_ack_age", "%s is out of range (want 10s to 24h)", formatDuration(c.Health.MaxAckAge))
	}
	v.remoteConfig(c.RemoteConfig, c.Uplink.MQTT)
}

func (v *validator) modem(m Modem) {
	if err := sdk.CheckModelName(m.Model); err != nil {
		v.failf("modem.model", "%v", err)
	}
	switch {
	case m.Port == "":
		v.required("modem.port", "name the modem's serial device, e.g. /dev/ttyUSB2")
	case !filepath.IsAbs(m.Port):
		v.failf("modem.port", "%q is not an absolute device path (want e.g. /dev/ttyUSB2)", m.Port)
	}
	if m.Poll < 100*time.Millisecond || m.Poll > time.Hour {
		v.failf("modem.poll", "%s is out of range (want 100ms to 1h)", formatDuration(m.Poll))
	}
	if !slices.Contains(standardBauds, m.Baud) {
		strs := make([]string, len(standardBauds))
		for i, b := range standardBauds {
			strs[i] = strconv.Itoa(b)
		}
		v.failf("modem.baud", "%d is not a standard baud rate (want one of %s)", m.Baud, strings.Join(strs, ", "))
	}
	// The APN is sent inside a quoted AT command: anything beyond the APN
	// grammar could break out of the quotes.
	if m.APN != "" && (len(m.APN) > 100 || !apnRE.MatchString(m.APN)) {
		v.failf("modem.apn", "%q is not an APN (want labels of letters, digits and '-' separated by '.', at most 100 characters)", m.APN)
	}
	// The plugin judges what its options mean; only their shape is the
	// agent's business.
	for _, name := range sortedMapKeys(m.Options) {
		path, value := "modem.options."+name, m.Options[name]
		switch {
		case !optionNameRE.MatchString(name):
			v.failf(path, "%q is not an option name (want 1 to 64 letters, digits, '_' or '-')", name)
		case len(value) > 256:
			v.failf(path, "the value is %d characters long, more than 256", len(value))
		case strings.IndexFunc(value, unicode.IsControl) >= 0:
			v.failf(path, "%s contains a control character", show(value))
		}
	}
}

func (v *validator) plugins(p Plugins, model string) {
	if p.Dir == "" {
		v.required("plugins.dir", "name the directory holding cellgate-plugin-<model> binaries")
	}
	for _, name := range sortedMapKeys(p.SHA256) {
		path := "plugins.sha256." + name
		if err := sdk.CheckModelName(name); err != nil {
			v.failf(path, "%v", err)
		}
		if sum := p.SHA256[name]; !sha256RE.MatchString(sum) {
			v.failf(path, "%s is not a SHA-256 digest (want 64 hex digits, as sha256sum prints)", show(sum))
		}
	}
	if _, ok := p.SHA256[model]; !ok && sdk.CheckModelName(model) == nil {
		v.warn("plugins.sha256", "no checksum for model %s: its plugin binary runs unverified (set plugins.sha256.%s)", model, model)
	}
}

func (v *validator) tls(t TLS) {
	v.oneOf("tls.mode", t.Mode, TLSModeModem, TLSModeHost)
	if t.Mode == TLSModeModem && t.CA == "" && !t.Insecure {
		v.fail("tls.ca", []string{"tls.mode", "tls.insecure"},
			"is required when tls.mode is modem: the modem verifies the server against it (tls.insecure: true skips that, for tests only)")
	}
	switch {
	case t.Cert != "" && t.Key == "":
		v.fail("tls.cert", []string{"tls.key"}, "is set without tls.key (set both or neither)")
	case t.Key != "" && t.Cert == "":
		v.fail("tls.key", []string{"tls.cert"}, "is set without tls.cert (set both or neither)")
	}
	if t.KeyPasswordFile != "" && t.Key == "" {
		v.fail("tls.key_password_file", []string{"tls.key"}, "is set without tls.key (the password decrypts tls.key)")
	}
	if t.RenewBefore < 0 || t.RenewBefore > 366*24*time.Hour {
		v.failf("tls.renew_before", "%s is out of range (want 0s to 366d, a year)", formatDuration(t.RenewBefore))
	}
	v.oneOf("tls.key_type", t.KeyType, "p256", "p384", "p521", "rsa2048")
	if t.RotationTimeout < 10*time.Second || t.RotationTimeout > 24*time.Hour {
		v.failf("tls.rotation_timeout", "%s is out of range (want 10s to 24h)", formatDuration(t.RotationTimeout))
	}
	if t.SNI != "" && !validHost(t.SNI) {
		v.failf("tls.sni", "%q is not a host name", t.SNI)
	}
	if t.Insecure {
		v.warn("tls.insecure", "true: the server's certificate is not verified, so anyone on the path can read and forge the traffic")
	}
}

func (v *validator) inputs(in Inputs) {
	v.listen("inputs.http.listen", in.HTTP.Listen, httpExposure)
	if in.HTTP.MaxBody < KiB || in.HTTP.MaxBody > 64*MiB {
		v.failf("inputs.http.max_body", "%s is out of range (want 1KiB to 64MiB)", in.HTTP.MaxBody)
	}
	v.datagramListen("inputs.udp.listen", in.UDP.Listen)
	if in.Demo.Rate < 0 || in.Demo.Rate > 10000 {
		v.failf("inputs.demo.rate", "%s is out of range (want 0 to 10000 readings per second; 0 disables)", show(in.Demo.Rate))
	}
}

// statusListener checks the status listener's keys.
func (v *validator) statusListener(s Status) {
	exposure := statusExposure
	if s.TokenFile == "" {
		exposure += " (set status.token_file to require a bearer token)"
	} else if !filepath.IsAbs(s.TokenFile) {
		v.failf("status.token_file", "%q is not an absolute path", s.TokenFile)
	}
	v.listen("status.listen", s.Listen, exposure)
}

// What a listener beyond loopback lets other machines do, for its warning.
// The HTTP input's listener serves only the ingest and /healthz, /readyz;
// the status listener serves the agent's status and metrics.
const (
	datagramExposure = "other machines can send readings"
	httpExposure     = datagramExposure + " and read /healthz"
	statusExposure   = "other machines can read the agent's status (/v1/status: modem IMEI, SIM ICCID, operator, signal, spool and uplink state), metrics (/metrics) and status page"
)

// listen checks a host:port to listen on; empty disables the input. A
// listener beyond loopback gets a warning saying what it exposes.
func (v *validator) listen(path, addr, exposure string) {
	if addr == "" {
		return
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil || !validPort(port, true) || (host != "" && !validHost(host)) {
		v.failf(path, "%q is not host:port (want e.g. 127.0.0.1:8080)", addr)
		return
	}
	if ip := net.ParseIP(host); host == "localhost" || (ip != nil && ip.IsLoopback()) {
		return
	}
	v.warn(path, "%s listens beyond loopback: %s", addr, exposure)
}

// datagramListen accepts what the datagram input binds: host:port or
// udp:host:port for UDP, unix:/absolute/path for a Unix datagram socket.
func (v *validator) datagramListen(path, addr string) {
	if rest, ok := strings.CutPrefix(addr, "unix:"); ok {
		if !strings.HasPrefix(rest, "/") || len(rest) > 107 {
			v.failf(path, "%q: a Unix socket needs an absolute path of at most 107 bytes (e.g. unix:/run/cellgate/readings.sock)", addr)
		}
		return
	}
	v.listen(path, strings.TrimPrefix(addr, "udp:"), datagramExposure)
}

func validPort(s string, zeroOK bool) bool {
	n, err := strconv.Atoi(s)
	return err == nil && n <= 65535 && (n > 0 || (zeroOK && n == 0)) && s == strconv.Itoa(n)
}

// validHost accepts an IP address or a DNS name. Hosts are sent to the
// modem inside quoted AT commands, so nothing else may pass.
func validHost(h string) bool {
	if net.ParseIP(h) != nil {
		return true
	}
	if h == "" || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(strings.TrimSuffix(h, "."), ".") {
		if !hostLabelRE.MatchString(label) {
			return false
		}
	}
	return true
}

func (v *validator) spool(s Spool) {
	if s.Dir == "" {
		v.required("spool.dir", "name the directory that holds the spool")
	}
	if s.MaxBytes < 64*KiB {
		v.failf("spool.max_bytes", "%s is out of range (want at least 64KiB)", s.MaxBytes)
	}
	v.oneOf("spool.when_full", s.WhenFull, WhenFullReject, WhenFullDropOldest)
	// A refused batch is at most a few hundred KiB: 1MiB always keeps the
	// newest one whole.
	if s.RefusedMaxBytes < MiB {
		v.failf("spool.refused_max_bytes", "%s is out of range (want at least 1MiB)", s.RefusedMaxBytes)
	}
}

func (v *validator) uplink(u Uplink) {
	kindPaths := []string{"uplink.mqtt", "uplink.tls_lines", "uplink.https"}
	var configured []string
	for i, set := range []bool{u.MQTT != nil, u.TLSLines != nil, u.HTTPS != nil} {
		if set {
			configured = append(configured, kindPaths[i])
		}
	}
	switch len(configured) {
	case 0:
		v.fail("uplink", kindPaths, "no uplink is configured (want exactly one of %s)", orList(kindPaths))
	case 1:
	default:
		for _, p := range configured[1:] {
			v.fail(p, configured, "is configured as well as %s; configure exactly one uplink", configured[0])
		}
	}
	if u.MQTT != nil {
		v.mqtt(*u.MQTT)
	}
	if u.TLSLines != nil {
		switch t := u.TLSLines; {
		case t.Addr == "":
			v.required("uplink.tls_lines.addr", "name the peer as host:port")
		default:
			host, port, err := net.SplitHostPort(t.Addr)
			if err != nil || !validHost(host) || !validPort(port, false) {
				v.failf("uplink.tls_lines.addr", "%q is not host:port (want e.g. upstream.example.com:7000)", t.Addr)
			}
		}
		if !u.TLSLines.Ack {
			v.warn("uplink.tls_lines.ack", "false: the peer does not acknowledge lines, so a reading can be lost after it leaves the spool (at-most-once)")
		}
	}
	if u.HTTPS != nil {
		v.https(*u.HTTPS)
	}
	if u.MaxInFlight < 1 || u.MaxInFlight > 1000 {
		v.failf("uplink.max_in_flight", "%d is out of range (want 1 to 1000)", u.MaxInFlight)
	}
	b := u.Batch
	if b.MaxReadings < 1 || b.MaxReadings > 10000 {
		v.failf("uplink.batch.max_readings", "%d is out of range (want 1 to 10000)", b.MaxReadings)
	}
	if b.BacklogMaxReadings < 0 || b.BacklogMaxReadings > 10000 {
		v.failf("uplink.batch.backlog_max_readings", "%d is out of range (want 0 to 10000)", b.BacklogMaxReadings)
	}
	if b.MaxDelay < 0 || b.MaxDelay > time.Hour {
		v.failf("uplink.batch.max_delay", "%s is out of range (want 0s to 1h)", formatDuration(b.MaxDelay))
	}
	v.oneOf("uplink.batch.encoding", b.Encoding, EncodingJSON, EncodingCBOR, EncodingCBORDeflate, EncodingCompact)
}

func (v *validator) mqtt(m MQTT) {
	const p = "uplink.mqtt."
	if m.Broker == "" {
		v.required(p+"broker", "name the broker as mqtts://host:port")
	} else if u, err := url.Parse(m.Broker); err != nil || u.Scheme != "mqtts" || !validHost(u.Hostname()) ||
		(u.Port() != "" && !validPort(u.Port(), false)) || (u.Path != "" && u.Path != "/") ||
		u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		v.failf(p+"broker", "%q is not an MQTT broker URL (want mqtts://host:port; TLS is always on)", redact.URL(m.Broker))
	}
	v.topic(p+"topic", m.Topic, true)
	if m.QoS < 0 || m.QoS > 2 {
		v.failf(p+"qos", "%d is out of range (want 0, 1 or 2)", m.QoS)
	} else if m.QoS == 0 {
		v.warn(p+"qos", "0: the broker does not acknowledge, so a reading can be lost after it leaves the spool (at-most-once)")
	}
	if len(m.ClientID) > 128 || strings.IndexFunc(m.ClientID, unicode.IsControl) >= 0 {
		v.failf(p+"client_id", "%s is not a client ID (want at most 128 printable characters)", show(m.ClientID))
	}
	v.seconds(p+"session_expiry", m.SessionExpiry, 1<<32-1)
	v.seconds(p+"keepalive", m.KeepAlive, 65535)
}

// seconds checks an MQTT interval, which goes on the wire in whole seconds.
func (v *validator) seconds(path string, d time.Duration, max int64) {
	switch {
	case d < 0 || d > time.Duration(max)*time.Second:
		v.failf(path, "%s is out of range (want 0s to %s)", formatDuration(d), formatDuration(time.Duration(max)*time.Second))
	case d%time.Second != 0:
		v.failf(path, "%s is not a whole number of seconds", formatDuration(d))
	}
}

// topic checks a topic to publish or subscribe to; {device_id} is its only
// placeholder.
func (v *validator) topic(path, t string, required bool) {
	switch {
	case t == "":
		if required {
			v.required(path, "name a topic such as cellgate/{device_id}/telemetry")
		}
		return
	case len(t) > 1024 || strings.IndexFunc(t, unicode.IsControl) >= 0:
		v.failf(path, "%s is not a topic (want at most 1024 printable characters)", show(t))
		return
	case strings.ContainsAny(t, "+#"):
		v.failf(path, "%q contains a wildcard (+ or #); name one topic", t)
		return
	}
	for _, ph := range placeRE.FindAllString(t, -1) {
		if ph != "{device_id}" {
			v.failf(path, "%q has an unknown placeholder %s (want {device_id})", t, ph)
			return
		}
	}
}

func (v *validator) https(h HTTPS) {
	const p = "uplink.https.url"
	if h.URL == "" {
		v.required(p, "name the endpoint as https://host/path")
		return
	}
	u, err := url.Parse(h.URL)
	if err != nil || u.Scheme != "https" || !validHost(u.Hostname()) ||
		(u.Port() != "" && !validPort(u.Port(), false)) || u.Fragment != "" || u.Opaque != "" {
		v.failf(p, "%q is not an HTTPS URL (want https://host[:port]/path)", redact.URL(h.URL))
	}
}

func sortedMapKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// normalize fills what Load derives once the values are known good:
// lower-case checksums, the broker's default port, the MQTT client ID,
// {device_id} in topics, and paths relative to the file's directory.
func normalize(c *Config, fileDir string) {
	for name, sum := range c.Plugins.SHA256 {
		c.Plugins.SHA256[name] = strings.ToLower(sum)
	}
	if m := c.Uplink.MQTT; m != nil {
		if u, err := url.Parse(m.Broker); err == nil && u.Port() == "" {
			u.Host = net.JoinHostPort(u.Hostname(), "8883")
			m.Broker = u.String()
		}
		if m.ClientID == "" {
			m.ClientID = c.DeviceID
		}
		if c.RemoteConfig.Enabled {
			if m.ConfigTopic == "" {
				m.ConfigTopic = DefaultConfigTopic
			}
			if m.StatusTopic == "" {
				m.StatusTopic = DefaultStatusTopic
			}
		}
		expand := strings.NewReplacer("{device_id}", c.DeviceID)
		m.Topic = expand.Replace(m.Topic)
		m.ConfigTopic = expand.Replace(m.ConfigTopic)
		m.StatusTopic = expand.Replace(m.StatusTopic)
	}
	for _, p := range []*string{&c.TLS.CA, &c.TLS.Cert, &c.TLS.Key, &c.TLS.KeyPasswordFile, &c.Plugins.Dir, &c.Spool.Dir, &c.RemoteConfig.Dir} {
		if *p != "" && !filepath.IsAbs(*p) && fileDir != "" {
			*p = filepath.Join(fileDir, *p)
		}
	}
}
