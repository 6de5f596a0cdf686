package remote

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/cellgate/cellgate/internal/atomicfile"
)

// RenewFormat is the format of a signed certificate renewal request, sent
// on cellgate/{device_id}/cert/renew (docs/certificates.md, "Rotation").
// It is the envelope of Format with an empty config, checked by the same
// rules: a trusted key, this gateway's device_id or "*", not expired, and
// a version above the last renewal accepted (its own sequence, kept apart
// from the configuration's).
const RenewFormat = "cellgate-renew/1"

// renewVersionFile holds the last renewal version accepted, in
// remote_config.dir.
const renewVersionFile = "renew.version"

// NewRenewEnvelope returns an unsigned renewal request; see NewEnvelope.
func NewRenewEnvelope(deviceID string, version uint64, issued, expires time.Time, keyID string) *Envelope {
	e := NewEnvelope(deviceID, version, issued, expires, keyID, "")
	e.Format = RenewFormat
	return e
}

// RenewLog is the replay protection of renewal requests: the last version
// accepted, kept in dir across restarts.
type RenewLog struct {
	dir string
}

// OpenRenewLog returns the log kept in dir (remote_config.dir), creating
// the directory when missing.
func OpenRenewLog(dir string) (*RenewLog, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("renewal log: %w", err)
	}
	return &RenewLog{dir: dir}, nil
}

// Last returns the last version accepted (0: none).
func (l *RenewLog) Last() (uint64, error) {
	p := filepath.Join(l.dir, renewVersionFile)
	data, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("renewal log: %w", err)
	}
	v, err := strconv.ParseUint(strings.TrimSpace(string(data)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("renewal log %s: %w", p, err)
	}
	return v, nil
}

// Verify checks data as a renewal request for deviceID, with p's keys and
// clock, against the last version accepted, and records its version
// durably before it returns it: the same request cannot be replayed, even
// after a restart. Errors are *Refusal for a request refused.
func (l *RenewLog) Verify(data []byte, p Policy) (*Envelope, error) {
	last, err := l.Last()
	if err != nil {
		return nil, err
	}
	p.Format, p.Committed = RenewFormat, last
	e, err := Verify(data, p)
	if err != nil {
		return e, err
	}
	if e.Config != "" {
		return e, refuse(ReasonMalformed, "a renewal request carries no config (%d bytes found)", len(e.Config))
	}
	if err := atomicfile.Write(l.dir, renewVersionFile, []byte(strconv.FormatUint(e.Version, 10)+"\n"), 0o600); err != nil {
		return e, fmt.Errorf("renewal log: %w", err)
	}
	return e, nil
}
