// Package config loads the cellgate agent's configuration.
//
// Layers, lowest to highest precedence: the built-in defaults (Defaults),
// the YAML file (--config, default DefaultFile), a remote overlay map (the
// accepted remote configuration), CELLGATE_* environment variables, and the
// command-line flags registered by BindFlags. Decoding is strict: an unknown
// key, a value of the wrong type or an invalid value stops Load, and every
// problem found is reported at once with the key's path and, for the file,
// the file name and line. configs/cellgate.yaml documents every key.
//
// Load returns a new Config each time and keeps no reference to it, and
// nothing is shared between calls: a reload is another Load whose result
// the caller swaps in, never a change to the live Config.
package config

import (
	"log/slog"
	"time"
)

// DefaultFile is the configuration file read when the caller names none. Its
// absence is not an error: the defaults, environment and flags apply alone.
const DefaultFile = "/etc/cellgate/cellgate.yaml"

// DefaultStatusListen is status.listen's default: the status listener on
// loopback. `cellgate status` asks there when nothing else names it.
const DefaultStatusListen = "127.0.0.1:9464"

// EnvPrefix starts every environment variable that sets a key. Nesting is
// written with a double underscore because keys such as max_bytes contain
// single ones: CELLGATE_SPOOL__MAX_BYTES sets spool.max_bytes.
const EnvPrefix = "CELLGATE_"

// Config is the agent's effective configuration. Field tags name the keys;
// the paths (device_id, uplink.mqtt.qos, …) are fixed because scripts and
// the remote configuration depend on them.
type Config struct {
	// DeviceID names this gateway upstream and fills {device_id} in topics.
	DeviceID string  `koanf:"device_id"`
	Modem    Modem   `koanf:"modem"`
	Plugins  Plugins `koanf:"plugins"`
	TLS      TLS     `koanf:"tls"`
	Inputs   Inputs  `koanf:"inputs"`
	Spool    Spool   `koanf:"spool"`
	Uplink   Uplink  `koanf:"uplink"`
	Log      Log     `koanf:"log"`
	// Status is the operator's listener: status, metrics, health, the
	// status page and the remote configuration endpoint.
	Status Status `koanf:"status"`
	// Health says when /healthz calls the agent unhealthy.
	Health Health `koanf:"health"`
	// RemoteConfig says whether and how the configuration may be changed
	// by signed pushes (see docs/remote-config.md).
	RemoteConfig RemoteConfig `koanf:"remote_config"`

	// source and opts are unexported so that no layer can set them
	// through a key.
	source Source
	opts   LoadOptions
}

// Source says where a Config came from, for `cellgate config check` and logs.
type Source struct {
	// File is the configuration file that was read, as given; empty when the
	// default file was absent and defaults applied.
	File string
	// Overlay is true when a remote overlay was applied.
	Overlay bool
	// Env lists the CELLGATE_* variables that set keys, sorted.
	Env []string
	// Flags lists the flags that set keys (without dashes), sorted.
	Flags []string
}

// Modem selects the modem plugin and the serial line it drives.
type Modem struct {
	// Model names the plugin binary cellgate-plugin-<model>.
	Model string `koanf:"model"`
	// Port is the modem's serial device.
	Port string `koanf:"port"`
	// Baud is the serial line rate.
	Baud int `koanf:"baud"`
	// APN is the packet data access point; empty leaves the modem's own.
	APN string `koanf:"apn"`
	// Options are the modem plugin's own settings, passed to it verbatim
	// (sdk.ModemConfig.Options). Each plugin documents the keys it reads
	// and refuses any other, which stops the agent.
	Options map[string]string `koanf:"options"`
	// Poll is how often the agent asks the plugin for the modem's state
	// (SIM, registration, signal, operator, packet data context).
	Poll time.Duration `koanf:"poll"`
}

// Status is the status listener: GET /v1/status, /metrics, /healthz,
// /readyz, the status page (/ and /v1/history) and /v1/config.
type Status struct {
	// Listen is host:port; empty disables the listener.
	Listen string `koanf:"listen"`
	// TokenFile, when set, names a file (mode 0600 or stricter) holding a
	// bearer token every request but /healthz and /readyz must carry.
	TokenFile string `koanf:"token_file"`
}

// Health is what /healthz holds the agent to.
type Health struct {
	// MaxAckAge is how long the uplink may go without an acknowledged
	// publish while readings wait before the agent is unhealthy.
	MaxAckAge time.Duration `koanf:"max_ack_age"`
}

// Plugins says where modem plugins live and how they are verified.
type Plugins struct {
	// Dir holds the cellgate-plugin-<model> binaries.
	Dir string `koanf:"dir"`
	// SHA256 maps a model to the lower-case hex SHA-256 of its plugin binary;
	// a plugin with an entry is refused when its checksum differs.
	SHA256 map[string]string `koanf:"sha256"`
}

// TLS is the upstream TLS profile. Relative file names are resolved against
// the configuration file's directory by Load.
type TLS struct {
	// Mode is TLSModeModem (the modem terminates TLS) or TLSModeHost
	// (crypto/tls on the gateway over a plain modem socket).
	Mode string `koanf:"mode"`
	// CA is the PEM file of the certificate authorities trusted for the
	// server. Empty in host mode means the system roots.
	CA string `koanf:"ca"`
	// Cert and Key are the PEM client certificate and key, both or neither.
	Cert string `koanf:"cert"`
	Key  string `koanf:"key"`
	// SNI overrides the server name sent and verified; empty uses the host.
	SNI string `koanf:"sni"`
	// Insecure skips server verification. Load returns a warning when set.
	Insecure bool `koanf:"insecure"`
	// KeyPasswordFile names a file holding the password of an encrypted
	// Key (PKCS#8 "ENCRYPTED PRIVATE KEY" or legacy PEM encryption); one
	// trailing newline is stripped. Like Key, it must not be readable by
	// group or others.
	KeyPasswordFile string `koanf:"key_password_file"`
	// RenewBefore is how long before the client certificate expires the
	// checks start warning (and rotation starts).
	RenewBefore time.Duration `koanf:"renew_before"`
	// AllowReadableKey accepts a Key (and KeyPasswordFile) that group or
	// others may read; by default such a file is refused.
	AllowReadableKey bool `koanf:"allow_readable_key"`
	// KeyType is the type of the key a certificate rotation makes on the
	// gateway: p256 (the default), p384, p521 or rsa2048.
	KeyType string `koanf:"key_type"`
	// CSRSubject is the common name of a rotation's certificate request;
	// empty means the device id.
	CSRSubject string `koanf:"csr_subject"`
	// RotationTimeout bounds each wait of a certificate rotation: for the
	// signed certificate, and for the first acknowledged publish with it.
	RotationTimeout time.Duration `koanf:"rotation_timeout"`
}

// The TLS modes.
const (
	TLSModeModem = "modem"
	TLSModeHost  = "host"
)

// Inputs are the local sources of readings.
type Inputs struct {
	HTTP HTTPInput `koanf:"http"`
	UDP  UDPInput  `koanf:"udp"`
	Demo DemoInput `koanf:"demo"`
}

// HTTPInput is the POST /v1/readings ingest.
type HTTPInput struct {
	// Listen is host:port; empty disables the input.
	Listen string `koanf:"listen"`
	// MaxBody bounds a request body; larger ones get 413.
	MaxBody ByteSize `koanf:"max_body"`
}

// UDPInput is the JSON-lines datagram ingest.
type UDPInput struct {
	// Listen is host:port; empty disables the input.
	Listen string `koanf:"listen"`
}

// DemoInput generates readings for the quickstart.
type DemoInput struct {
	// Rate is readings per second; 0 disables the generator.
	Rate float64 `koanf:"rate"`
}

// Spool is the on-disk queue between inputs and the uplink.
type Spool struct {
	Dir      string   `koanf:"dir"`
	MaxBytes ByteSize `koanf:"max_bytes"`
	// WhenFull is WhenFullReject (refuse new readings) or WhenFullDropOldest.
	WhenFull string `koanf:"when_full"`
	// RefusedMaxBytes bounds <dir>/refused/, where batches the upstream
	// refused for good are kept: past it, the oldest files go first.
	RefusedMaxBytes ByteSize `koanf:"refused_max_bytes"`
}

// The spool policies when full.
const (
	WhenFullReject     = "reject"
	WhenFullDropOldest = "drop_oldest"
)

// Uplink is how readings leave the gateway. After Load exactly one of MQTT,
// TLSLines and HTTPS is non-nil.
type Uplink struct {
	MQTT     *MQTT     `koanf:"mqtt"`
	TLSLines *TLSLines `koanf:"tls_lines"`
	HTTPS    *HTTPS    `koanf:"https"`
	Batch    Batch     `koanf:"batch"`
	// MaxInFlight is the most batches sent and not yet acknowledged at
	// once (1 to 1000): MQTT also stays within the broker's Receive
	// Maximum; https pipelines at most 16 requests on its connection (where
	// the server keeps it open); tls_lines without acks sends one at a
	// time whatever it says.
	MaxInFlight int `koanf:"max_in_flight"`
}

// The uplink kinds, as returned by Uplink.Kind.
const (
	UplinkMQTT     = "mqtt"
	UplinkTLSLines = "tls_lines"
	UplinkHTTPS    = "https"
)

// Kind names the configured uplink: UplinkMQTT, UplinkTLSLines or
// UplinkHTTPS. It returns "" for a Uplink that did not come from Load and has
// none configured.
func (u Uplink) Kind() string {
	switch {
	case u.MQTT != nil:
		return UplinkMQTT
	case u.TLSLines != nil:
		return UplinkTLSLines
	case u.HTTPS != nil:
		return UplinkHTTPS
	}
	return ""
}

// MQTT is the MQTT v5 uplink. Load expands {device_id} in the topics and
// sets ClientID to the device ID when it was left empty.
type MQTT struct {
	// Broker is mqtts://[user[:password]@]host[:port]; Load adds the
	// default port 8883 when none is given.
	Broker        string        `koanf:"broker" redact:"url"`
	Topic         string        `koanf:"topic"`
	QoS           int           `koanf:"qos"`
	ClientID      string        `koanf:"client_id"`
	SessionExpiry time.Duration `koanf:"session_expiry"`
	KeepAlive     time.Duration `koanf:"keepalive"`
	// ConfigTopic receives signed remote configuration; empty disables it.
	ConfigTopic string `koanf:"config_topic"`
	// StatusTopic receives the outcome of remote configuration.
	StatusTopic string `koanf:"status_topic"`
}

// TLSLines is the newline-delimited JSON over TLS uplink.
type TLSLines struct {
	// Addr is the peer's host:port.
	Addr string `koanf:"addr"`
	// Ack says the peer answers "ack <id>" lines; without them the uplink
	// is at-most-once.
	Ack bool `koanf:"ack"`
}

// HTTPS is the HTTPS POST uplink.
type HTTPS struct {
	// URL is the https:// endpoint batches are posted to.
	URL string `koanf:"url" redact:"url"`
}

// Batch shapes what goes upstream in one message.
type Batch struct {
	MaxReadings int           `koanf:"max_readings"`
	MaxDelay    time.Duration `koanf:"max_delay"`
	// Encoding is EncodingJSON, EncodingCBOR, EncodingCBORDeflate or
	// EncodingCompact.
	Encoding string `koanf:"encoding"`
	// BacklogMaxReadings is the most readings in one message while a
	// backlog drains (more than MaxReadings already waiting in the spool):
	// larger messages then keep a long round trip's line busier and
	// compress better. Below MaxReadings (0 included): no larger messages.
	BacklogMaxReadings int `koanf:"backlog_max_readings"`
}

// The batch encodings.
const (
	EncodingJSON        = "json"
	EncodingCBOR        = "cbor"
	EncodingCBORDeflate = "cbor+deflate"
	EncodingCompact     = "compact"
)

// Log configures the agent's slog output.
type Log struct {
	// Level is debug, info, warn or error.
	Level string `koanf:"level"`
	// Format is text or json.
	Format string `koanf:"format"`
}

// SlogLevel returns Level as a slog.Level. Load has validated it, so an
// unknown level (only possible on a hand-built Log) maps to info.
func (l Log) SlogLevel() slog.Level {
	switch l.Level {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}

// RemoteConfig is the policy for signed remote configuration. Its keys
// are read from the local layers only: an overlay can never set them, and
// TrustedKeys only the file (see NeverRemote).
type RemoteConfig struct {
	// Enabled lets the agent accept pushes (over MQTT on
	// uplink.mqtt.config_topic, or by `cellgate config apply`).
	Enabled bool `koanf:"enabled"`
	// TrustedKeys maps a key ID to a base64 (standard, padded) raw 32-byte
	// Ed25519 public key. Only the configuration file may set it.
	TrustedKeys map[string]string `koanf:"trusted_keys"`
	// Allow lists the key paths a push may set: a key (uplink.mqtt.topic)
	// or every key of a section (uplink.batch.*). NeverRemote wins over it.
	Allow []string `koanf:"allow"`
	// Confirm is how long an applied push has to prove the uplink healthy
	// before it is rolled back.
	Confirm time.Duration `koanf:"confirm"`
	// Dir holds the accepted overlay (remote.yaml) and the remote
	// configuration's state; it must be writable by the agent.
	Dir string `koanf:"dir"`
}

// NeverRemote are the top-level keys no overlay may set, whatever
// remote_config.allow says: the gateway's identity, its modem and plugins,
// its TLS credentials, the remote configuration's own rules, and the status
// listener (its token guards POST /v1/config). Load refuses them in every
// overlay.
var NeverRemote = []string{"device_id", "modem", "plugins", "tls", "remote_config", "status"}

// DefaultRemoteAllow is the default of remote_config.allow.
var DefaultRemoteAllow = []string{"inputs.*", "uplink.batch.*", "uplink.mqtt.topic", "uplink.mqtt.keepalive", "spool.max_bytes", "spool.when_full", "log.*"}

// The remote configuration topics' defaults, filled in when
// remote_config.enabled is true and the uplink is MQTT.
const (
	DefaultConfigTopic = "cellgate/{device_id}/config"
	DefaultStatusTopic = "cellgate/{device_id}/config/status"
)

// Source reports where c was loaded from.
func (c *Config) Source() Source { return c.source }

// LoadOptions returns the options c was loaded with, so that a caller can
// load the same layers again with another overlay (a remote push being
// validated). The maps and FlagSet in them are shared, and only read.
func (c *Config) LoadOptions() LoadOptions { return c.opts }

// Defaults returns a fresh copy of the built-in defaults layer as a nested
// map of key to value, in the form a YAML file would give. device_id has no
// default. The uplink sections have none here either: configuring one is
// the choice of uplink, and the defaults of the chosen one (see
// configs/cellgate.yaml) are filled in by Load.
func Defaults() map[string]any {
	return map[string]any{
		"modem": map[string]any{
			"model":   "sim7600",
			"port":    "/dev/ttyUSB2",
			"baud":    115200,
			"apn":     "",
			"options": map[string]any{},
			"poll":    "30s",
		},
		"plugins": map[string]any{
			"dir":    "/usr/lib/cellgate/plugins",
			"sha256": map[string]any{},
		},
		"tls": map[string]any{
			"mode":     TLSModeModem,
			"ca":       "",
			"cert":     "",
			"key":      "",
			"sni":      "",
			"insecure": false,
			// key_password_file, renew_before, allow_readable_key:
			// see TLS.
			"key_password_file":  "",
			"renew_before":       "30d",
			"allow_readable_key": false,
			// key_type, csr_subject, rotation_timeout: see TLS.
			"key_type":         "p256",
			"csr_subject":      "",
			"rotation_timeout": "10m",
		},
		"inputs": map[string]any{
			"http": map[string]any{"listen": "127.0.0.1:8080", "max_body": "1MiB"},
			"udp":  map[string]any{"listen": ""},
			"demo": map[string]any{"rate": 0.0},
		},
		"spool": map[string]any{
			"dir":       "/var/lib/cellgate/spool",
			"max_bytes": "256MiB",
			"when_full": WhenFullReject,
			// refused_max_bytes: see Spool.RefusedMaxBytes.
			"refused_max_bytes": "64MiB",
		},
		"uplink": map[string]any{
			"max_in_flight": 32,
			"batch": map[string]any{
				"max_readings":         100,
				"max_delay":            "2s",
				"backlog_max_readings": 500,
				"encoding":             EncodingJSON,
			},
		},
		"log": map[string]any{
			"level":  "info",
			"format": "text",
		},
		"status": map[string]any{
			"listen":     DefaultStatusListen,
			"token_file": "",
		},
		"health": map[string]any{
			"max_ack_age": "5m",
		},
		"remote_config": map[string]any{
			"enabled":      false,
			"trusted_keys": map[string]any{},
			"allow":        toAnySlice(DefaultRemoteAllow),
			"confirm":      "60s",
			"dir":          "/var/lib/cellgate",
		},
	}
}

func toAnySlice(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

// uplinkDefaults returns the defaults of one uplink section, applied only
// when that section is configured.
func uplinkDefaults(kind string) map[string]any {
	switch kind {
	case UplinkMQTT:
		return map[string]any{
			"topic":          "cellgate/{device_id}/telemetry",
			"qos":            1,
			"client_id":      "",
			"session_expiry": "1h",
			"keepalive":      "4m",
			"config_topic":   "",
			"status_topic":   "",
		}
	case UplinkTLSLines:
		return map[string]any{"ack": true}
	case UplinkHTTPS:
		return map[string]any{}
	}
	return nil
}

// uplinkKinds lists the uplink sections in schema order.
var uplinkKinds = []string{UplinkMQTT, UplinkTLSLines, UplinkHTTPS}
