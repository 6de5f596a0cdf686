package bg96

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cellgate/cellgate/sdk"
)

// settings are what Open read from ModemConfig.Options (modem.options in
// the agent's config). The keys are documented in README.md.
type settings struct {
	pdp             int           // pdp_context: the PDP context id, 1-16
	negotiateTime   time.Duration // negotiate_time: the modem's TLS handshake bound
	ignoreLocalTime bool          // ignore_local_time: skip certificate dates on the modem
}

// defaultSettings are the BG96's own defaults (ignorelocaltime 1,
// negotiatetime 300) and the context every example in Quectel's notes uses.
func defaultSettings() settings {
	return settings{pdp: 1, negotiateTime: 300 * time.Second, ignoreLocalTime: true}
}

// optionParsers read one option each into a settings.
var optionParsers = map[string]func(s *settings, v string) error{
	"pdp_context": func(s *settings, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 16 {
			return fmt.Errorf("%q is not a PDP context id (want 1 to 16)", v)
		}
		s.pdp = n
		return nil
	},
	"negotiate_time": func(s *settings, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil || d < 10*time.Second || d > 300*time.Second || d%time.Second != 0 {
			return fmt.Errorf("%q is out of range (want whole seconds from 10s to 5m0s)", v)
		}
		s.negotiateTime = d
		return nil
	},
	"ignore_local_time": func(s *settings, v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("%q is not a boolean (want true or false)", v)
		}
		s.ignoreLocalTime = b
		return nil
	},
}

// parseOptions reads opts; an unknown key or a bad value is an
// *sdk.OptionError naming it, checked in key order so the error is stable.
func parseOptions(opts map[string]string) (settings, error) {
	s := defaultSettings()
	keys := make([]string, 0, len(opts))
	for k := range opts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		parse, ok := optionParsers[k]
		if !ok {
			return s, &sdk.OptionError{Key: k, Reason: "unknown option (the bg96 plugin reads " + knownOptions() + ")"}
		}
		if err := parse(&s, opts[k]); err != nil {
			return s, &sdk.OptionError{Key: k, Reason: err.Error()}
		}
	}
	return s, nil
}

func knownOptions() string {
	keys := make([]string, 0, len(optionParsers))
	for k := range optionParsers {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return strings.Join(keys, ", ")
}
