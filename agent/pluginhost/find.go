// Package pluginhost finds, verifies, starts and supervises the modem plugin
// process for the agent and the command line.
package pluginhost

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/cellgate/cellgate/sdk"
)

// SystemDir is where packages install plugins.
const SystemDir = "/usr/lib/cellgate/plugins"

// BinaryPrefix is the file name prefix of plugin binaries:
// cellgate-plugin-<model>.
const BinaryPrefix = "cellgate-plugin-"

// DefaultDirs is the plugin search path when none is configured: the
// directory of the cellgate binary (a build tree or tarball), then SystemDir.
func DefaultDirs(executable string) []string {
	var dirs []string
	if executable != "" {
		if resolved, err := filepath.EvalSymlinks(executable); err == nil {
			executable = resolved
		}
		dirs = append(dirs, filepath.Dir(executable))
	}
	return append(dirs, SystemDir)
}

// Find returns the path of the plugin for model in the first of dirs that
// has it. The error lists every place looked at, so an operator sees at
// once where the binary should be. A model that is not a model name
// (sdk.CheckModelName) is refused before any directory is looked at.
func Find(model string, dirs []string) (string, error) {
	if err := sdk.CheckModelName(model); err != nil {
		return "", err
	}
	name := BinaryPrefix + model
	var tried []string
	for _, d := range dirs {
		p := filepath.Join(d, name)
		st, err := os.Stat(p)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			tried = append(tried, p)
			continue
		case err != nil:
			return "", fmt.Errorf("plugin %s: %w", p, err)
		case st.IsDir():
			return "", fmt.Errorf("plugin %s is a directory", p)
		case st.Mode().Perm()&0o111 == 0:
			return "", fmt.Errorf("plugin %s is not executable", p)
		}
		return p, nil
	}
	return "", fmt.Errorf("no plugin for modem model %q: looked for %s", model, strings.Join(tried, ", "))
}
