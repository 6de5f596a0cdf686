package certcheck

import (
	"bytes"
	"encoding/hex"
	"slices"

	"github.com/cellgate/cellgate/agent/config"
	"github.com/cellgate/cellgate/agent/pluginhost"
	"github.com/cellgate/cellgate/sdk"
)

// PluginDirs is where the agent looks for plugin binaries: plugins.dir
// when set, else pluginhost.DefaultDirs of the cellgate binary.
func PluginDirs(p config.Plugins, executable string) []string {
	if p.Dir != "" {
		return []string{p.Dir}
	}
	return pluginhost.DefaultDirs(executable)
}

// plugins checks that the configured model's plugin is there and that
// every plugin binary found for a plugins.sha256 entry has that checksum,
// as the plugin host will check at start (pluginhost.Find and
// sdk.FileSHA256, the same code).
func (r *Report) plugins(cfg *config.Config, executable string) {
	dirs := PluginDirs(cfg.Plugins, executable)
	models := make([]string, 0, len(cfg.Plugins.SHA256))
	for m := range cfg.Plugins.SHA256 {
		models = append(models, m)
	}
	slices.Sort(models)
	if _, pinned := cfg.Plugins.SHA256[cfg.Modem.Model]; !pinned {
		if _, err := pluginhost.Find(cfg.Modem.Model, dirs); err != nil {
			r.fail("modem.model", "%v", err)
		}
	}
	for _, model := range models {
		key := "plugins.sha256." + model
		path, err := pluginhost.Find(model, dirs)
		if err != nil {
			if model == cfg.Modem.Model {
				r.fail("modem.model", "%v", err)
			}
			continue // a pin for a model this gateway does not run
		}
		want, err := hex.DecodeString(cfg.Plugins.SHA256[model])
		if err != nil {
			r.fail(key, "%v", err)
			continue
		}
		got, err := sdk.FileSHA256(path)
		if err != nil {
			r.fail(key, "%v", err)
			continue
		}
		if !bytes.Equal(got, want) {
			r.fail(key, "%v", &sdk.ChecksumError{Path: path, Want: want, Got: got})
		}
	}
}
