package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"
)

// progress shows what a long operation is doing on one line of a terminal
// (the step, what the plugin reported, and the seconds it has taken so
// far), and nothing when stderr is not a terminal: scripts and the journal
// get only results and errors.
type progress struct {
	w  io.Writer
	on bool

	mu      sync.Mutex // guards the fields below and writes to w
	msg     string     // the current step; "" when the line is clear
	started time.Time  // when msg was shown
	stop    chan struct{}
	stopped chan struct{}
}

// newProgress returns the progress line of env's stderr; it shows nothing
// unless stderr is a terminal. Close ends it.
func newProgress(env Env) *progress {
	p := &progress{w: env.Stderr}
	f, ok := env.Stderr.(*os.File)
	p.on = ok && term.IsTerminal(int(f.Fd()))
	if p.on {
		p.stop, p.stopped = make(chan struct{}), make(chan struct{})
		go p.tick()
	}
	return p
}

// tick redraws the line every second with the time the step has taken.
func (p *progress) tick() {
	defer close(p.stopped)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
			p.mu.Lock()
			p.draw()
			p.mu.Unlock()
		}
	}
}

// draw writes the line; p.mu is held.
func (p *progress) draw() {
	if p.msg == "" {
		return
	}
	line := p.msg
	if s := time.Since(p.started).Truncate(time.Second); s > 0 {
		line += fmt.Sprintf(" (%s)", s)
	}
	fmt.Fprintf(p.w, "\r\033[K%s", line)
}

// Step shows msg as what is being done now.
func (p *progress) Step(format string, a ...any) {
	if !p.on {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.msg, p.started = fmt.Sprintf(format, a...), time.Now()
	p.draw()
}

// Clear erases the line, so that other output starts on a clean line.
func (p *progress) Clear() {
	if !p.on {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clear()
}

func (p *progress) clear() {
	if p.msg != "" {
		fmt.Fprint(p.w, "\r\033[K")
		p.msg = ""
	}
}

// Close clears the line and stops redrawing it.
func (p *progress) Close() {
	if !p.on {
		return
	}
	close(p.stop)
	<-p.stopped
	p.Clear()
}

// Handler returns a log handler that passes records at level and above to
// next (clearing the progress line first) and shows the plugin's info
// records, such as "certificate downloaded file=ca.pem bytes=1834", as
// progress steps on a terminal.
func (p *progress) Handler(next slog.Handler, level slog.Level) slog.Handler {
	return &progressHandler{p: p, next: next, level: level}
}

type progressHandler struct {
	p     *progress
	next  slog.Handler
	level slog.Level
	attrs []slog.Attr
}

func (h *progressHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.level || (h.p.on && l >= slog.LevelInfo)
}

func (h *progressHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= h.level {
		h.p.Clear()
		return h.next.Handle(ctx, r)
	}
	var b strings.Builder
	b.WriteString(r.Message)
	show := func(a slog.Attr) bool {
		switch a.Key {
		case "file", "bytes", "model", "revision", "rssi", "registration", "profile":
			fmt.Fprintf(&b, " %s=%s", a.Key, a.Value)
		}
		return true
	}
	for _, a := range h.attrs {
		show(a)
	}
	r.Attrs(show)
	h.p.Step("%s", b.String())
	return nil
}

func (h *progressHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &progressHandler{p: h.p, next: h.next.WithAttrs(attrs), level: h.level, attrs: append(append([]slog.Attr(nil), h.attrs...), attrs...)}
}

func (h *progressHandler) WithGroup(name string) slog.Handler {
	return &progressHandler{p: h.p, next: h.next.WithGroup(name), level: h.level, attrs: h.attrs}
}
