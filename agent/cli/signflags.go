package cli

import (
	"crypto/ed25519"
	"fmt"
	"os"
	"time"

	"github.com/cellgate/cellgate/agent/config"
	"github.com/cellgate/cellgate/agent/remote"
)

// signFlags are the flags config sign and cert sign share: the signing key
// file, the key's ID, the envelope's version and device, and how long it is
// valid.
type signFlags struct {
	keyFile, keyID, device, expires *string
	version                         *uint64
}

// load checks the flags and reads the signing key; cmd ("config sign")
// starts every usage error.
func (s signFlags) load(cmd string) (ed25519.PrivateKey, time.Duration, error) {
	switch {
	case *s.keyFile == "":
		return nil, 0, usageError("%s: --key is required", cmd)
	case !config.KeyIDPattern.MatchString(*s.keyID):
		return nil, 0, usageError("%s: --key-id %q: want 1 to 64 letters, digits, '.', '_' or '-'", cmd, *s.keyID)
	case *s.version == 0:
		return nil, 0, usageError("%s: --version is required, from 1", cmd)
	case *s.device != remote.AnyDevice && !config.DeviceIDPattern.MatchString(*s.device):
		return nil, 0, usageError("%s: --device %q: want a device_id or '*'", cmd, *s.device)
	}
	validity, err := parseValidity(*s.expires)
	if err != nil {
		return nil, 0, usageError("%s: %v", cmd, err)
	}
	keyPEM, err := os.ReadFile(*s.keyFile)
	if err != nil {
		return nil, 0, err
	}
	key, err := remote.ParsePrivateKey(keyPEM)
	if err != nil {
		return nil, 0, fmt.Errorf("%s: %w", *s.keyFile, err)
	}
	return key, validity, nil
}
