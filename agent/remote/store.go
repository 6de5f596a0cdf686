package remote

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/cellgate/cellgate/internal/atomicfile"
)

// The files of remote_config.dir.
const (
	// OverlayFile is the committed overlay: the layer config.Load puts
	// between the local file and the environment.
	OverlayFile = "remote.yaml"
	// pendingFile is the overlay of a push in its confirm window.
	pendingFile = "remote.yaml.pending"
	// StateFile records the committed version, a pending push and the last
	// outcome; its rename is the commit point of every transition.
	StateFile = "remote-state.json"
)

// Record is one accepted push as the Store keeps it.
type Record struct {
	Version uint64 `json:"version"`
	KeyID   string `json:"key_id"`
	// At is when it was committed, or, pending, when it began applying.
	At time.Time `json:"at"`
	// SHA256 is the hex SHA-256 of its overlay.
	SHA256 string `json:"sha256"`
}

// State is what remote-state.json holds.
type State struct {
	// Committed is the push in effect (nil: none ever). Its version is the
	// floor every later push must exceed.
	Committed *Record `json:"committed,omitempty"`
	// Pending is a push applied but not yet confirmed.
	Pending *Record `json:"pending,omitempty"`
	// Last is the last outcome that changed something on disk (applying,
	// committed, rolled_back; refusals change nothing).
	Last *Status `json:"last,omitempty"`
	// LastPublished says the broker acknowledged Last; a start publishes a
	// Last that a stop cut short.
	LastPublished bool `json:"last_published,omitempty"`
}

// Store keeps the remote configuration's files in one directory. Every
// write is atomic (a temporary file, fsync, rename, fsync of the
// directory), and remote-state.json is the single commit point:
//
//	Begin:  remote.yaml.pending written, then the state names it pending;
//	Commit: the state names it committed, then it is renamed remote.yaml;
//	Abort:  the state forgets it, then remote.yaml.pending is removed.
//
// A crash between the two steps of any of them leaves files that
// ReadCommitted and OpenStore resolve the same way. A Store is used by one
// goroutine (the Manager's).
type Store struct {
	dir   string
	state State
}

// OpenStore opens (creating it if needed) the store in dir and finishes or
// undoes what a crash interrupted: a commit whose state was written but
// whose overlay was not renamed is completed, and a pending overlay the
// state does not know is removed. A push still pending is left for the
// Manager to roll back and report.
func OpenStore(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("remote config: create %s: %w", dir, err)
	}
	st, err := readState(dir)
	if err != nil {
		return nil, err
	}
	s := &Store{dir: dir, state: st}
	pending, err := os.ReadFile(s.path(pendingFile))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return s, nil
	case err != nil:
		return nil, fmt.Errorf("remote config: %w", err)
	case st.Pending != nil:
		return s, nil
	case st.Committed != nil && sha256Hex(pending) == st.Committed.SHA256:
		if err := os.Rename(s.path(pendingFile), s.path(OverlayFile)); err != nil {
			return nil, fmt.Errorf("remote config: finish committing version %d: %w", st.Committed.Version, err)
		}
	default:
		if err := os.Remove(s.path(pendingFile)); err != nil {
			return nil, fmt.Errorf("remote config: remove an overlay never applied: %w", err)
		}
	}
	return s, syncDir(dir)
}

// ReadCommitted returns the committed overlay in dir and the file it was
// read from, or nil when no push was ever committed. It only reads, so
// `cellgate config check` can call it: a commit interrupted between its
// two steps is resolved as OpenStore will resolve it.
func ReadCommitted(dir string) ([]byte, string, error) {
	st, err := readState(dir)
	if err != nil {
		return nil, "", err
	}
	if st.Pending == nil && st.Committed != nil {
		p := filepath.Join(dir, pendingFile)
		if data, err := os.ReadFile(p); err == nil && sha256Hex(data) == st.Committed.SHA256 {
			return data, p, nil
		}
	}
	p := filepath.Join(dir, OverlayFile)
	data, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, "", nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("remote config: %w", err)
	}
	return data, p, nil
}

func readState(dir string) (State, error) {
	var st State
	data, err := os.ReadFile(filepath.Join(dir, StateFile))
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("remote config: %w", err)
	}
	if err := json.Unmarshal(data, &st); err != nil {
		return st, fmt.Errorf("remote config: %s is damaged: %w", filepath.Join(dir, StateFile), err)
	}
	return st, nil
}

// State returns what the store holds now.
func (s *Store) State() State { return s.state }

// Dir is the store's directory.
func (s *Store) Dir() string { return s.dir }

// MarkPublished records that the broker acknowledged st, if st is the
// last outcome.
func (s *Store) MarkPublished(st Status) error {
	if s.state.Last == nil || s.state.LastPublished || !s.state.Last.Same(st) {
		return nil
	}
	next := s.state
	next.LastPublished = true
	return s.writeState(next)
}

// Begin records rec, whose overlay is overlay, as pending, with last
// (applying) as the last outcome.
func (s *Store) Begin(rec Record, overlay []byte, last Status) error {
	if err := writeAtomic(s.dir, pendingFile, overlay); err != nil {
		return err
	}
	next := s.state
	next.Pending, next.Last = &rec, &last
	return s.writeState(next)
}

// Commit makes the pending push the committed one, at at, with last
// (committed) as the last outcome.
func (s *Store) Commit(at time.Time, last Status) error {
	if s.state.Pending == nil {
		return errors.New("remote config: nothing pending to commit")
	}
	rec := *s.state.Pending
	rec.At = at
	next := State{Committed: &rec, Last: &last}
	if err := s.writeState(next); err != nil {
		return err
	}
	if err := os.Rename(s.path(pendingFile), s.path(OverlayFile)); err != nil {
		return fmt.Errorf("remote config: install the committed overlay: %w", err)
	}
	return syncDir(s.dir)
}

// Abort forgets the pending push, with last (rolled_back) as the last
// outcome; the committed overlay is untouched.
func (s *Store) Abort(last Status) error {
	next := State{Committed: s.state.Committed, Last: &last}
	if err := s.writeState(next); err != nil {
		return err
	}
	if err := os.Remove(s.path(pendingFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remote config: remove the rolled back overlay: %w", err)
	}
	return syncDir(s.dir)
}

func (s *Store) writeState(next State) error {
	data, err := json.MarshalIndent(next, "", "  ")
	if err != nil {
		return err
	}
	if err := writeAtomic(s.dir, StateFile, append(data, '\n')); err != nil {
		return err
	}
	s.state = next
	return nil
}

func (s *Store) path(name string) string { return filepath.Join(s.dir, name) }

// writeAtomic replaces dir/name with data (internal/atomicfile).
func writeAtomic(dir, name string, data []byte) error {
	if err := atomicfile.Write(dir, name, data, 0o640); err != nil {
		return fmt.Errorf("remote config: %w", err)
	}
	return nil
}

func syncDir(dir string) error {
	if err := atomicfile.SyncDir(dir); err != nil {
		return fmt.Errorf("remote config: %w", err)
	}
	return nil
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
