package logging

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// Under the journal each line starts with its level's syslog priority, once,
// in text and in JSON, with the logger's attributes intact.
func TestJournalLinesCarryTheirPriority(t *testing.T) {
	for _, asJSON := range []bool{false, true} {
		t.Run(fmt.Sprintf("json=%v", asJSON), func(t *testing.T) {
			var buf bytes.Buffer
			log := slog.New(NewHandler(&buf, Options{JSON: asJSON, Level: slog.Level(-8), Journal: true})).With("part", "spool")
			log.Error("e")
			log.Warn("w")
			log.Info("i")
			log.Debug("d")
			log.Log(t.Context(), slog.Level(-8), "trace")
			lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
			want := []string{"<3>", "<4>", "<6>", "<7>", "<7>"}
			if len(lines) != len(want) {
				t.Fatalf("got %d lines, want %d:\n%s", len(lines), len(want), buf.String())
			}
			for i, l := range lines {
				if !strings.HasPrefix(l, want[i]) || strings.Count(l, "<") != 1 && !asJSON {
					t.Errorf("line %d = %q, want one %s prefix", i, l, want[i])
				}
				if !strings.Contains(l, "spool") {
					t.Errorf("line %d = %q lost the logger's attribute", i, l)
				}
				if asJSON && !strings.HasPrefix(l[len(want[i]):], "{") {
					t.Errorf("line %d = %q: JSON must follow the prefix directly", i, l)
				}
			}
		})
	}
}

// Off the journal the lines are exactly slog's, and the level filters.
func TestPlainLinesHaveNoPrefix(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(NewHandler(&buf, Options{Level: slog.LevelInfo}))
	log.Debug("hidden")
	log.Warn("shown", "k", "v")
	if got := buf.String(); strings.HasPrefix(got, "<") || strings.Contains(got, "hidden") || !strings.Contains(got, "msg=shown k=v") {
		t.Errorf("output = %q", got)
	}
}

// ToJournal is true only for the very file JOURNAL_STREAM names.
func TestToJournalMatchesTheNamedStream(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "stream"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		env  string
		want bool
	}{
		{fmt.Sprintf("%d:%d", st.Dev, st.Ino), true},
		{fmt.Sprintf("%d:%d", st.Dev, st.Ino+1), false},
		{"", false},
		{"garbage", false},
	} {
		t.Setenv("JOURNAL_STREAM", c.env)
		if got := ToJournal(f); got != c.want {
			t.Errorf("JOURNAL_STREAM=%q: ToJournal = %v, want %v", c.env, got, c.want)
		}
	}
}
