// Package cli is the cellgate command line: `cellgate run`, `cellgate modem
// …`, `cellgate config check`, `cellgate status`. cmd/cellgate's main only
// calls Main; cmd/cellgate/gendoc renders Command's tree as man pages.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

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

// environmentHelp lists every environment variable cellgate reads; it ends
// the root command's help and the man page.
const environmentHelp = `Environment:
  CELLGATE_<SECTION>__<KEY>  sets a configuration key, "__" between levels:
                             CELLGATE_MODEM__PORT=/dev/ttyUSB3 sets modem.port;
                             above the file, below the flags
  CREDENTIALS_DIRECTORY      systemd credentials: tls.ca, tls.cert, tls.key,
                             tls.key_password_file and status.token_file
                             found there replace the configured files (run)
  NOTIFY_SOCKET              systemd notification socket: READY=1, RELOADING=1,
                             STOPPING=1 and STATUS= are sent there (run)
  WATCHDOG_USEC, WATCHDOG_PID  systemd watchdog: WATCHDOG=1 pings (run)
  JOURNAL_STREAM             stderr is the journal: lines get syslog priority
                             prefixes, errors "<3>"
  CELLGATE_PLUGIN_LOG_LEVEL  set by cellgate for the plugins it starts (their
                             log level); not a configuration key`

// rootLong is `cellgate --help`'s description.
const rootLong = `cellgate is an edge agent for cellular IoT gateways: it takes sensor
readings (HTTP, UDP, Unix datagrams), keeps them in a durable spool and
sends them upstream (MQTT v5, TLS lines, HTTPS) through a modem plugin that
drives a SIMCom or Quectel modem on a serial port. The same binary is the
operator's tool: talk to the modem, check and sign configurations, and ask
the running agent how it is doing.

Exit status: 0 success, 1 failure, 2 usage error (one line on stderr,
prefixed "cellgate: ").

` + environmentHelp

const rootExample = `  cellgate run --config /etc/cellgate/cellgate.yaml
  cellgate modem info --model sim7600 --port /dev/ttyUSB2
  cellgate config check --config /etc/cellgate/cellgate.yaml
  cellgate status
  cellgate version
  source <(cellgate completion bash)`

// Main runs the command line args (without the program name) and returns the
// process exit status: 0 success, 1 failure, 2 usage error. Errors are one
// line on stderr, prefixed "cellgate: ".
func Main(args []string, env Env) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := Command(env)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil || errors.Is(err, errHelp) {
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

// errHelp is what a command returns after printing its help on request:
// exit status 0.
var errHelp = errors.New("help shown")

// Command returns cellgate's command tree, writing to env's streams. Main
// executes it; cmd/cellgate/gendoc renders it as man pages.
func Command(env Env) *cobra.Command {
	root := &cobra.Command{
		Use:           "cellgate",
		Short:         "An edge agent for cellular IoT gateways",
		Long:          rootLong,
		Example:       rootExample,
		Version:       buildinfo.Get().String(),
		Args:          subcommandArgs,
		RunE:          groupRun,
		SilenceErrors: true,
		SilenceUsage:  true,
		// The man page is the same for every build; `cellgate version`
		// says which build it is.
		DisableAutoGenTag: true,
	}
	root.SetVersionTemplate("{{.Version}}\n")
	// A group is runnable only to refuse a wrong operand: its usage is
	// "cellgate modem [command]", not "cellgate modem [flags]".
	root.SetUsageTemplate(strings.Replace(root.UsageTemplate(), "Usage:{{if .Runnable}}", "Usage:{{if and .Runnable (not .HasAvailableSubCommands)}}", 1))
	root.SetIn(env.Stdin)
	root.SetOut(env.Stdout)
	root.SetErr(env.Stderr)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usageError("%s%v", where(c), err)
	})
	root.SetHelpCommand(helpCommand())
	root.AddCommand(runCommand(env), modemCommand(env), configCommand(env), statusCommand(env), versionCommand(env))
	addLegacyCommands(root, env)
	return root
}

// subcommandArgs refuses an operand where a command of a group was
// expected, naming the closest command when there is one.
func subcommandArgs(c *cobra.Command, args []string) error {
	if len(args) == 0 || args[0] == "help" {
		return nil
	}
	hint := ""
	if c.SuggestionsMinimumDistance <= 0 {
		c.SuggestionsMinimumDistance = 2
	}
	if s := c.SuggestionsFor(args[0]); len(s) > 0 {
		hint = fmt.Sprintf("; did you mean %q?", s[0])
	}
	return usageError("unknown command %q for %q%s (see %s --help)", args[0], c.CommandPath(), hint, c.CommandPath())
}

// groupRun is the action of a command that only groups others (cellgate,
// cellgate modem, ...): `help` as its operand shows its help, nothing is a
// usage error.
func groupRun(c *cobra.Command, args []string) error {
	if len(args) > 0 && args[0] == "help" {
		return c.Help()
	}
	var names []string
	for _, sub := range c.Commands() {
		if sub.IsAvailableCommand() && sub.Name() != "help" && sub.Name() != "completion" {
			names = append(names, sub.Name())
		}
	}
	if !c.HasParent() {
		return usageError("no command given: want one of %s (see cellgate --help)", strings.Join(names, ", "))
	}
	return usageError("%swant a command: %s (see %s --help)", where(c), strings.Join(names, ", "), c.CommandPath())
}

// where is the start of a usage error of c: its path without "cellgate"
// (the error line starts with it already), "modem info: ", or "" for the
// root.
func where(c *cobra.Command) string {
	if !c.HasParent() {
		return ""
	}
	return strings.TrimPrefix(c.CommandPath(), c.Root().Name()+" ") + ": "
}

// group returns a command that holds subcommands and does nothing itself.
func group(use, short, long, example string, subs ...*cobra.Command) *cobra.Command {
	c := &cobra.Command{Use: use, Short: short, Long: long, Example: example, Args: subcommandArgs, RunE: groupRun}
	c.AddCommand(subs...)
	return c
}

// action is a command's work, run after its flags were parsed; the
// operands are the flag set's Args.
type action func(ctx context.Context) error

// leaf returns the command c with the flags setup declares on c's own flag
// set, running the action setup returns.
func leaf(c *cobra.Command, setup func(fs *pflag.FlagSet) action) *cobra.Command {
	fs := c.Flags()
	fs.SortFlags = false
	run := setup(fs)
	c.RunE = func(cmd *cobra.Command, _ []string) error { return run(cmd.Context()) }
	return c
}

// helpCommand is `cellgate help [COMMAND...]`: cobra's, except that an
// unknown command is a usage error (exit 2), not a help page.
func helpCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "help [command]",
		Short:   "Help about any command",
		Long:    "Help shows the description, examples and flags of any command.",
		Example: "  cellgate help\n  cellgate help modem certs provision",
		ValidArgsFunction: func(c *cobra.Command, args []string, prefix string) ([]string, cobra.ShellCompDirective) {
			var names []string
			if parent, rest, err := c.Root().Find(args); err == nil && len(rest) == 0 {
				for _, sub := range parent.Commands() {
					if sub.IsAvailableCommand() && strings.HasPrefix(sub.Name(), prefix) {
						names = append(names, sub.Name())
					}
				}
			}
			return names, cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(c *cobra.Command, args []string) error {
			target, rest, err := c.Root().Find(args)
			if err != nil || len(rest) > 0 {
				return usageError("help: unknown command %q (see cellgate --help)", strings.Join(args, " "))
			}
			return target.Help()
		},
	}
}

func versionCommand(env Env) *cobra.Command {
	return &cobra.Command{
		Use:     "version",
		Short:   "Print the version, commit, date, Go version and platform",
		Long:    "Print the version, commit, date, Go version and platform of this cellgate binary\n(the same line as cellgate --version).",
		Example: "  cellgate version\n  cellgate --version",
		Args:    noOperands,
		RunE: func(*cobra.Command, []string) error {
			fmt.Fprintln(env.Stdout, buildinfo.Get())
			return nil
		},
	}
}

// noOperands refuses every operand.
func noOperands(c *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageError("%sunexpected argument %q", where(c), args[0])
	}
	return nil
}

// extraCommands are commands registered by other files of this package in
// the form before the cobra tree: each parses its own flags, prints its help
// and returns errHelp on -h/--help, and returns usageError for exit status 2.
// Command wraps each one its tree does not already have.
var extraCommands = map[string]func(context.Context, []string, Env) error{}

// extraShort is the one-line description of each extraCommands entry, for
// the command list of `cellgate --help`.
var extraShort = map[string]string{
	"plugin": "Check a modem plugin or run the test echo server",
	"pki":    "Create and serve a development PKI",
	"cert":   "Renew the gateway's client certificate",
}

// addLegacyCommands adds to root every extraCommands entry it lacks, with
// its own flag parsing and help.
func addLegacyCommands(root *cobra.Command, env Env) {
	names := make([]string, 0, len(extraCommands))
	for name := range extraCommands {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if c, _, err := root.Find([]string{name}); err == nil && c != root {
			continue
		}
		fn := extraCommands[name]
		short := extraShort[name]
		if short == "" {
			short = "The " + name + " commands (see cellgate " + name + " --help)"
		}
		c := &cobra.Command{
			Use:                name,
			Short:              short,
			DisableFlagParsing: true,
			RunE: func(cmd *cobra.Command, args []string) error {
				return fn(cmd.Context(), args, env)
			},
		}
		c.SetHelpFunc(func(cmd *cobra.Command, _ []string) {
			ctx := cmd.Context()
			if ctx == nil {
				ctx = context.Background()
			}
			if err := fn(ctx, []string{"--help"}, env); err != nil && !errors.Is(err, errHelp) {
				printErr(env.Stderr, "cellgate: "+oneLine(err.Error()))
			}
		})
		root.AddCommand(c)
	}
}

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
