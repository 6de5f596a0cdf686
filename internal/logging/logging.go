// Package logging builds cellgate's log handler: text or JSON lines on
// standard error and, when standard error is the systemd journal, each line
// prefixed with its syslog priority (sd-daemon(3)): "<3>" error, "<4>"
// warning, "<6>" info, "<7>" debug. journald strips the prefix and files the
// line at that priority, so `journalctl -u cellgate -p err` shows only errors.
package logging

import (
	"context"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
)

// Options say how lines are written.
type Options struct {
	// JSON writes one JSON object per line; otherwise key=value text.
	JSON bool
	// Level is the least severe level written.
	Level slog.Leveler
	// Journal prefixes every line with its syslog priority; see ToJournal.
	Journal bool
}

// NewHandler returns a handler writing to w as opts say. Each record is one
// Write on w, prefix included, so lines from concurrent loggers never mix.
func NewHandler(w io.Writer, opts Options) slog.Handler {
	if !opts.Journal {
		return newInner(w, opts)
	}
	mu := new(sync.Mutex)
	var h journalHandler
	for i, p := range priorities {
		h.byPriority[i] = newInner(&prefixWriter{w: w, prefix: []byte(p.prefix), mu: mu}, opts)
	}
	return h
}

func newInner(w io.Writer, opts Options) slog.Handler {
	ho := &slog.HandlerOptions{Level: opts.Level}
	if opts.JSON {
		return slog.NewJSONHandler(w, ho)
	}
	return slog.NewTextHandler(w, ho)
}

// priorities are the syslog priorities cellgate's levels map to, most
// severe first; a record takes the first whose level it reaches.
var priorities = [...]struct {
	least  slog.Level
	prefix string
}{
	{slog.LevelError, "<3>"}, // LOG_ERR
	{slog.LevelWarn, "<4>"},  // LOG_WARNING
	{slog.LevelInfo, "<6>"},  // LOG_INFO
	{-1 << 31, "<7>"},        // LOG_DEBUG, and the plugins' trace
}

// journalHandler sends each record to the inner handler of its priority.
// The inner handlers share options, attributes and groups.
type journalHandler struct {
	byPriority [len(priorities)]slog.Handler
}

func (h journalHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.byPriority[0].Enabled(ctx, l)
}

func (h journalHandler) Handle(ctx context.Context, r slog.Record) error {
	for i, p := range priorities {
		if r.Level >= p.least {
			return h.byPriority[i].Handle(ctx, r)
		}
	}
	return nil
}

func (h journalHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	for i := range h.byPriority {
		h.byPriority[i] = h.byPriority[i].WithAttrs(attrs)
	}
	return h
}

func (h journalHandler) WithGroup(name string) slog.Handler {
	for i := range h.byPriority {
		h.byPriority[i] = h.byPriority[i].WithGroup(name)
	}
	return h
}

// prefixWriter writes prefix and a line in one Write. slog's handlers write
// a record in one call, so each record gets exactly one prefix.
type prefixWriter struct {
	w      io.Writer
	prefix []byte
	mu     *sync.Mutex // shared by the writers of one journalHandler
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	line := make([]byte, 0, len(p.prefix)+len(b))
	line = append(append(line, p.prefix...), b...)
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, err := p.w.Write(line); err != nil {
		return 0, err
	}
	return len(b), nil
}

// ToJournal says whether f is the stream systemd connected to the journal:
// $JOURNAL_STREAM names its device and inode ("dev:ino"). Checking the file
// itself, not only the variable, keeps prefixes out of a terminal or a pipe
// when an operator runs cellgate from a shell inside a unit's environment.
func ToJournal(f *os.File) bool {
	dev, ino, ok := strings.Cut(os.Getenv("JOURNAL_STREAM"), ":")
	if !ok {
		return false
	}
	d, err1 := strconv.ParseUint(dev, 10, 64)
	i, err2 := strconv.ParseUint(ino, 10, 64)
	if err1 != nil || err2 != nil {
		return false
	}
	gotDev, gotIno, ok := devIno(f)
	return ok && gotDev == d && gotIno == i
}
