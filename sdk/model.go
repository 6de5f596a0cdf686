package sdk

import (
	"fmt"
	"regexp"
)

// modelNameRE is the shape of a model name: it is a file name suffix
// (cellgate-plugin-<model>) and a config key (plugins.sha256.<model>), so
// nothing that a shell, a path or a YAML key would read specially, and no
// leading '-' that would make the binary's name look like an option.
var modelNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)

// CheckModelName returns nil if name can be a modem model name, as in
// ModemConfig.Model and the plugin binary cellgate-plugin-<name>: 1 to 64
// lower-case letters, digits, '-' or '_', starting with a letter or digit.
// Otherwise its error names the model and states the rule.
func CheckModelName(name string) error {
	if modelNameRE.MatchString(name) {
		return nil
	}
	return fmt.Errorf("modem model %q: want 1 to 64 lower-case letters, digits, '-' or '_', starting with a letter or digit (e.g. sim7600)", name)
}
