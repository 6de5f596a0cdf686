// Package cli is the cellgate command line: `cellgate run`, `cellgate modem
// …`, `cellgate config check`. cmd/cellgate's main only calls Main.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/cellgate/cellgate/internal/buildinfo"
	"github.com/cellgate/cellgate/internal/logging"
)

// Env is what a command may touch of the outside world; tests fill it in.
type Env struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	// Executable is the path of the running cellgate binary, used to find
	// plugins next to it. Empty means os.Executable().
	Executable string
}

// exitError carries a command's exit status and its one-line reason.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// usageError is a command line the user got wrong: exit status 2.
func usageError(format string, a ...any) error {
	return &exitError{code: 2, err: fmt.Errorf(format, a...)}
}

const usage = `cellgate: an edge agent for cellular IoT gateways

Usage:
  cellgate run          [--config FILE] [--device-id ID] [--modem.port PATH] …
  cellgate modem info   --model M --port PATH [--baud N] [--apn APN] [--json]
  cellgate modem certs  list|provision|delete … (see: cellgate modem certs --help)
  cellgate modem dial   --model M --port PATH --ca FILE [--cert FILE --key FILE]
                        [--tls modem|host] [--sni NAME] [--insecure] HOST:PORT
  cellgate config check [--config FILE]
  cellgate config keygen --out NAME            (NAME.key 0600, NAME.pub)
  cellgate config sign   --key F --key-id ID --version N --device ID|* --expires 7d OVERLAY.yaml
  cellgate config verify --trusted F.pub PUSH.json
  cellgate config push   --broker mqtts://… --ca F --cert F --key F PUSH.json
  cellgate config apply  PUSH.json             (on the gateway: same checks as a push)
  cellgate status       [--config FILE | --addr HOST:PORT] [--json]
  cellgate version       (or --version: version, commit, date, Go, platform)
`

// Main runs the command line args (without the program name) and returns the
// process exit status: 0 success, 1 failure, 2 usage error. Errors are one
// line on stderr, prefixed "cellgate: ".
func Main(args []string, env Env) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, args, env)
	if err == nil {
		return 0
	}
	if errors.Is(err, errHelp) {
		return 0
	}
	code := 1
	var ee *exitError
	if errors.As(err, &ee) {
		code = ee.code
	}
	printErr(env.Stderr, "cellgate: "+oneLine(err.Error()))
	return code
}

var errHelp = errors.New("help shown")

func run(ctx context.Context, args []string, env Env) error {
	if len(args) == 0 {
		fmt.Fprint(env.Stderr, usage)
		return usageError("no command given")
	}
	switch args[0] {
	case "modem":
		return modemCmd(ctx, args[1:], env)
	case "version", "--version":
		fmt.Fprintln(env.Stdout, buildinfo.Get())
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(env.Stdout, usage)
		return nil
	}
	if cmd, ok := extraCommands[args[0]]; ok {
		return cmd(ctx, args[1:], env)
	}
	fmt.Fprint(env.Stderr, usage)
	return usageError("unknown command %q", args[0])
}

// extraCommands are commands registered by other files of this package
// (run, config) so each command lives beside its own code.
var extraCommands = map[string]func(context.Context, []string, Env) error{}

// oneLine folds a multi-line message so the reason stays on one line, as
// scripts that read stderr expect.
func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " ")), " ")
}

// printErr writes msg and a newline to w. On the journal's stream every
// line is marked as an error ("<3>"), so `journalctl -p err` shows why
// cellgate stopped, not only what it logged before.
func printErr(w io.Writer, msg string) {
	if toJournal(w) {
		msg = "<3>" + strings.ReplaceAll(msg, "\n", "\n<3>")
	}
	fmt.Fprintln(w, msg)
}

// newLogger returns the CLI's logger: text on w at level, with syslog
// priority prefixes when w is the journal.
func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, usageError("--log-level %q: want debug, info, warn or error", level)
	}
	return slog.New(logging.NewHandler(w, logging.Options{Level: l, Journal: toJournal(w)})), nil
}
