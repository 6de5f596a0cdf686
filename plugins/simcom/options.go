package simcom

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/cellgate/cellgate/sdk"
)

// The options the SIMCom plugins read from sdk.ModemConfig.Options, which
// the agent fills from its modem.options verbatim. Any other key is refused
// with an *sdk.OptionError.
const (
	// OptionNegotiateTime bounds the modem's TLS handshake: a Go duration
	// of whole seconds from 10s to 5m (the module's AT+CSSLCFG
	// "negotiatetime" range), e.g. "45s". It is written to every TLS
	// profile the plugin configures, and a dial waits that long plus a
	// margin for the modem's result. Default: the model's Profile
	// NegotiateTime (120s). A shorter bound fails a dial to a silent
	// server sooner; a longer one suits a slow network.
	OptionNegotiateTime = "negotiate_time"
	// OptionDecryptKeyOnHost ("true" or "false", default "false") is for
	// firmware without AT+CSSLCFG="keypwd" (older than the manual's
	// 2021-04-21 revision): with "true", an encrypted client key is
	// decrypted by the plugin and downloaded to the module in plain;
	// without it such a module refuses an encrypted key with a
	// *sdk.BundleError. A module with keypwd always gets the key
	// encrypted, whatever this says.
	OptionDecryptKeyOnHost = "decrypt_key_on_host"
)

// The module's range for AT+CSSLCFG="negotiatetime".
const (
	minNegotiateTime = 10 * time.Second
	maxNegotiateTime = 300 * time.Second
)

// options are the settings Open parsed from ModemConfig.Options.
type options struct {
	negotiateTime    time.Duration
	decryptKeyOnHost bool
}

// parseOptions checks raw against the options above and returns them, with
// the profile's defaults for those not set. The first bad key, in sorted
// order, is the error.
func parseOptions(p Profile, raw map[string]string) (options, error) {
	o := options{negotiateTime: p.NegotiateTime}
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v := raw[k]
		switch k {
		case OptionNegotiateTime:
			d, err := time.ParseDuration(strings.TrimSpace(v))
			if err != nil {
				return o, &sdk.OptionError{Key: k, Reason: fmt.Sprintf("%q is not a duration (want whole seconds from %s to %s, e.g. 45s)", v, minNegotiateTime, maxNegotiateTime)}
			}
			if d < minNegotiateTime || d > maxNegotiateTime || d%time.Second != 0 {
				return o, &sdk.OptionError{Key: k, Reason: fmt.Sprintf("%q is out of range (want whole seconds from %s to %s)", v, minNegotiateTime, maxNegotiateTime)}
			}
			o.negotiateTime = d
		case OptionDecryptKeyOnHost:
			switch strings.TrimSpace(v) {
			case "true":
				o.decryptKeyOnHost = true
			case "false":
			default:
				return o, &sdk.OptionError{Key: k, Reason: fmt.Sprintf("%q is not true or false", v)}
			}
		default:
			return o, &sdk.OptionError{Key: k, Reason: fmt.Sprintf("the %s plugin has no such option (it reads %s and %s)", p.Name, OptionNegotiateTime, OptionDecryptKeyOnHost)}
		}
	}
	return o, nil
}
