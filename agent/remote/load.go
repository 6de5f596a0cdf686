package remote

import (
	"crypto/ed25519"
	"errors"
	"fmt"

	"github.com/cellgate/cellgate/agent/config"
)

// LoadConfig loads the configuration the agent runs with: the local layers
// opts names (file, environment, flags) and, when they enable remote
// configuration, the committed overlay (remote.yaml in remote_config.dir)
// as the layer between the file and the environment. Only the local
// layers decide remote_config (no overlay may set it), so they are read
// first, alone.
//
// An overlay that no longer fits the local layers (the file was changed
// under it) is left out and said so in a warning, rather than keeping the
// gateway down for a push it accepted earlier. A remote_config.dir that
// cannot be read (an operator's `cellgate config check` without the
// service's rights) is a warning too: the agent itself then fails at
// start, opening the store, with the reason.
func LoadConfig(opts config.LoadOptions) (*config.Config, []config.Warning, error) {
	opts.Overlay, opts.OverlayYAML, opts.OverlayName = nil, nil, ""
	local, warnings, err := config.Load(opts)
	if err != nil || !local.RemoteConfig.Enabled {
		return local, warnings, err
	}
	data, path, err := ReadCommitted(local.RemoteConfig.Dir)
	if err != nil {
		return local, append(warnings, config.Warning{Path: "remote_config.dir",
			Message: fmt.Sprintf("the committed remote overlay cannot be read, so this is the configuration without it: %v", err)}), nil
	}
	if data == nil {
		return local, warnings, nil
	}
	opts.OverlayYAML, opts.OverlayName = data, path
	cfg, owarnings, err := config.Load(opts)
	if err != nil {
		var es *config.Errors
		if !errors.As(err, &es) {
			return nil, warnings, err
		}
		return local, append(warnings, config.Warning{
			Path: "remote_config", File: path,
			Message: fmt.Sprintf("the committed remote overlay no longer fits the local configuration and is left out until a push or a fix replaces it: %v", err),
		}), nil
	}
	return cfg, owarnings, nil
}

// TrustedKeys decodes remote_config.trusted_keys, which Load has checked.
func TrustedKeys(rc config.RemoteConfig) (map[string]ed25519.PublicKey, error) {
	out := make(map[string]ed25519.PublicKey, len(rc.TrustedKeys))
	for id, s := range rc.TrustedKeys {
		k, err := config.ParsePublicKey(s)
		if err != nil {
			return nil, fmt.Errorf("remote_config.trusted_keys.%s: %w", id, err)
		}
		out[id] = k
	}
	return out, nil
}
