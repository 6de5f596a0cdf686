package remote

import (
	"os"
	"path/filepath"
	"testing"
)

// The store's transitions, and what a crash between the two steps of each
// leaves: ReadCommitted (read only, for config check and the start) and
// OpenStore (the agent) must agree on the committed overlay.
func TestStoreCrashPoints(t *testing.T) {
	v1, v2 := []byte("log: {level: warn}\n"), []byte("log: {level: debug}\n")
	rec := func(v uint64, overlay []byte) Record {
		return Record{Version: v, KeyID: "ops-2026", At: testNow, SHA256: sha256Hex(overlay)}
	}
	committedV1 := func(t *testing.T) *Store {
		t.Helper()
		s, err := OpenStore(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Begin(rec(1, v1), v1, Status{Version: 1, State: StateApplying}); err != nil {
			t.Fatal(err)
		}
		if err := s.Commit(testNow, Status{Version: 1, State: StateCommitted}); err != nil {
			t.Fatal(err)
		}
		return s
	}
	expect := func(t *testing.T, dir string, want []byte, pending bool) {
		t.Helper()
		got, _, err := ReadCommitted(dir)
		if err != nil || string(got) != string(want) {
			t.Fatalf("ReadCommitted = %q, %v; want %q", got, err, want)
		}
		s, err := OpenStore(dir)
		if err != nil {
			t.Fatal(err)
		}
		if got, _, _ := ReadCommitted(dir); string(got) != string(want) {
			t.Fatalf("after OpenStore the committed overlay is %q, want %q", got, want)
		}
		if (s.State().Pending != nil) != pending {
			t.Fatalf("pending = %+v, want pending %v", s.State().Pending, pending)
		}
		if _, err := os.Stat(filepath.Join(dir, pendingFile)); (err == nil) != pending {
			t.Fatalf("pending file present = %v, want %v", err == nil, pending)
		}
	}

	t.Run("committed", func(t *testing.T) {
		s := committedV1(t)
		expect(t, s.Dir(), v1, false)
	})
	t.Run("pending", func(t *testing.T) {
		s := committedV1(t)
		if err := s.Begin(rec(2, v2), v2, Status{Version: 2, State: StateApplying}); err != nil {
			t.Fatal(err)
		}
		expect(t, s.Dir(), v1, true) // the Manager rolls it back
	})
	t.Run("crash after writing the pending overlay, before the state", func(t *testing.T) {
		s := committedV1(t)
		if err := writeAtomic(s.Dir(), pendingFile, v2); err != nil {
			t.Fatal(err)
		}
		expect(t, s.Dir(), v1, false) // never became pending: removed
	})
	t.Run("crash after the commit's state, before the rename", func(t *testing.T) {
		s := committedV1(t)
		if err := s.Begin(rec(2, v2), v2, Status{Version: 2, State: StateApplying}); err != nil {
			t.Fatal(err)
		}
		r := *s.state.Pending
		if err := s.writeState(State{Committed: &r}); err != nil {
			t.Fatal(err)
		}
		expect(t, s.Dir(), v2, false) // committed: the rename is finished
		if b, _ := os.ReadFile(filepath.Join(s.Dir(), OverlayFile)); string(b) != string(v2) {
			t.Fatalf("remote.yaml = %q after OpenStore finished the commit", b)
		}
	})
	t.Run("crash after the abort's state, before removing", func(t *testing.T) {
		s := committedV1(t)
		if err := s.Begin(rec(2, v2), v2, Status{Version: 2, State: StateApplying}); err != nil {
			t.Fatal(err)
		}
		if err := s.writeState(State{Committed: s.state.Committed}); err != nil {
			t.Fatal(err)
		}
		expect(t, s.Dir(), v1, false)
	})
	t.Run("nothing yet", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "remote")
		if got, path, err := ReadCommitted(dir); got != nil || path != "" || err != nil {
			t.Fatalf("ReadCommitted of a missing dir = %q, %q, %v", got, path, err)
		}
		expect(t, dir, nil, false)
	})
}

// The state file is written whole or not at all: a damaged one is an
// error, never an empty state (which would let old versions replay).
func TestStoreRefusesADamagedState(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, StateFile), []byte(`{"committed":{"version":4`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenStore(dir); err == nil {
		t.Fatal("OpenStore accepted a damaged state file")
	}
	if _, _, err := ReadCommitted(dir); err == nil {
		t.Fatal("ReadCommitted accepted a damaged state file")
	}
}
