package sdk

import (
	"context"
	"io"
	"log"
	"log/slog"
	"time"

	"github.com/hashicorp/go-hclog"
)

// levelTrace is hclog's Trace level in slog terms, one step below Debug.
const levelTrace = slog.LevelDebug - 4

// hclogLevel maps a slog level to the hclog level that covers it.
func hclogLevel(l slog.Level) hclog.Level {
	switch {
	case l < slog.LevelDebug:
		return hclog.Trace
	case l < slog.LevelInfo:
		return hclog.Debug
	case l < slog.LevelWarn:
		return hclog.Info
	case l < slog.LevelError:
		return hclog.Warn
	}
	return hclog.Error
}

// slogLevel maps an hclog level to slog.
func slogLevel(l hclog.Level) slog.Level {
	switch l {
	case hclog.Trace:
		return levelTrace
	case hclog.Debug:
		return slog.LevelDebug
	case hclog.Warn:
		return slog.LevelWarn
	case hclog.Error:
		return slog.LevelError
	}
	return slog.LevelInfo
}

// slogHCLog is an hclog.Logger that forwards to a slog.Logger. go-plugin
// logs through it, including every line the plugin wrote to stderr, which it
// parses from hclog JSON and re-logs at the line's own level; the level
// filter is the slog handler's.
type slogHCLog struct {
	l       *slog.Logger
	name    string
	implied []any
}

var _ hclog.Logger = (*slogHCLog)(nil)

func newSlogHCLog(l *slog.Logger, name string) *slogHCLog {
	return &slogHCLog{l: l, name: name}
}

func (h *slogHCLog) Log(level hclog.Level, msg string, args ...any) {
	if level == hclog.Off || level == hclog.NoLevel {
		level = hclog.Info
	}
	h.log(slogLevel(level), msg, args)
}

func (h *slogHCLog) log(level slog.Level, msg string, args []any) {
	ctx := context.Background()
	if !h.l.Enabled(ctx, level) {
		return
	}
	when, args := lineTime(args)
	r := slog.NewRecord(when, level, msg, 0)
	if h.name != "" {
		r.AddAttrs(slog.String("logger", h.name))
	}
	// hclog passes a lone trailing value for a malformed pair; slog turns
	// it into !BADKEY, which is what we want to see in that case.
	r.Add(h.implied...)
	r.Add(args...)
	_ = h.l.Handler().Handle(ctx, r)
}

// lineTime returns when a record happened and its attributes. go-plugin
// re-logs each line a plugin wrote with the line's @timestamp appended as a
// last "timestamp" pair (in hclog.TimeFormat); that time becomes the
// record's own, so the line carries one time key, the plugin's, instead of
// the handler's "time" beside a "timestamp". Any other record happens now.
func lineTime(args []any) (time.Time, []any) {
	if n := len(args); n >= 2 {
		if k, ok := args[n-2].(string); ok && k == "timestamp" {
			if v, ok := args[n-1].(string); ok {
				if t, err := time.Parse(hclog.TimeFormat, v); err == nil {
					return t, args[:n-2]
				}
			}
		}
	}
	return time.Now(), args
}

func (h *slogHCLog) Trace(msg string, args ...any) { h.log(levelTrace, msg, args) }
func (h *slogHCLog) Debug(msg string, args ...any) { h.log(slog.LevelDebug, msg, args) }
func (h *slogHCLog) Info(msg string, args ...any)  { h.log(slog.LevelInfo, msg, args) }
func (h *slogHCLog) Warn(msg string, args ...any)  { h.log(slog.LevelWarn, msg, args) }
func (h *slogHCLog) Error(msg string, args ...any) { h.log(slog.LevelError, msg, args) }

func (h *slogHCLog) enabled(l slog.Level) bool { return h.l.Enabled(context.Background(), l) }

func (h *slogHCLog) IsTrace() bool { return h.enabled(levelTrace) }
func (h *slogHCLog) IsDebug() bool { return h.enabled(slog.LevelDebug) }
func (h *slogHCLog) IsInfo() bool  { return h.enabled(slog.LevelInfo) }
func (h *slogHCLog) IsWarn() bool  { return h.enabled(slog.LevelWarn) }
func (h *slogHCLog) IsError() bool { return h.enabled(slog.LevelError) }

func (h *slogHCLog) ImpliedArgs() []any { return h.implied }

func (h *slogHCLog) With(args ...any) hclog.Logger {
	c := *h
	c.implied = append(append([]any(nil), h.implied...), args...)
	return &c
}

func (h *slogHCLog) Name() string { return h.name }

func (h *slogHCLog) Named(name string) hclog.Logger {
	c := *h
	if c.name != "" {
		c.name += "." + name
	} else {
		c.name = name
	}
	return &c
}

func (h *slogHCLog) ResetNamed(name string) hclog.Logger {
	c := *h
	c.name = name
	return &c
}

// SetLevel does nothing: the slog handler owns the level.
func (h *slogHCLog) SetLevel(hclog.Level) {}

// GetLevel reports the most verbose level the slog handler records; go-plugin
// uses it to skip parsing plugin lines that would be dropped.
func (h *slogHCLog) GetLevel() hclog.Level {
	for _, l := range []hclog.Level{hclog.Trace, hclog.Debug, hclog.Info, hclog.Warn, hclog.Error} {
		if h.enabled(slogLevel(l)) {
			return l
		}
	}
	return hclog.Off
}

func (h *slogHCLog) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(h.StandardWriter(opts), "", 0)
}

func (h *slogHCLog) StandardWriter(opts *hclog.StandardLoggerOptions) io.Writer {
	level := slog.LevelInfo
	if opts != nil && opts.ForceLevel != hclog.NoLevel && opts.ForceLevel != hclog.Off {
		level = slogLevel(opts.ForceLevel)
	}
	return slog.NewLogLogger(h.l.With("logger", h.name).Handler(), level).Writer()
}
