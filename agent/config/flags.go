package config

import (
	"github.com/spf13/pflag"
)

// flagKeyAnnotation marks the flags BindFlags registers as configuration
// overrides, so that Load takes only those from a FlagSet that also holds
// the command's own flags.
const flagKeyAnnotation = "cellgate/config-key"

// overrideFlags are the keys an operator most often sets for one run; every
// other key is set in the file or the environment.
var overrideFlags = []struct{ name, key, usage string }{
	{"device-id", "device_id", "gateway ID"},
	{"modem.model", "modem.model", "modem model, naming the plugin cellgate-plugin-<model>"},
	{"modem.port", "modem.port", "modem serial device"},
	{"modem.baud", "modem.baud", "modem serial line rate"},
	{"modem.apn", "modem.apn", "packet data APN"},
	{"plugins.dir", "plugins.dir", "directory of modem plugins"},
	{"spool.dir", "spool.dir", "spool directory"},
	{"log.level", "log.level", "log level: debug, info, warn or error"},
	{"log.format", "log.format", "log format: text or json"},
}

// BindFlags registers --config and the override flags (--device-id,
// --modem.model, --modem.port, --modem.baud, --modem.apn, --plugins.dir,
// --spool.dir, --log.level, --log.format) on fs. Pass the parsed fs to Load
// as LoadOptions.Flags: a flag the operator set wins over every other layer,
// and an unset one changes nothing. Override flags are strings so that a bad
// value is reported by Load like any other layer's. BindFlags panics, as
// pflag does, if fs already has a flag of one of these names.
func BindFlags(fs *pflag.FlagSet) {
	fs.String("config", DefaultFile, "configuration file (YAML); when the default file is absent, built-in defaults apply")
	for _, f := range overrideFlags {
		fs.String(f.name, "", f.usage+" (sets "+f.key+")")
		// SetAnnotation fails only for an unknown flag, and it was just added.
		_ = fs.SetAnnotation(f.name, flagKeyAnnotation, []string{f.key})
	}
}
