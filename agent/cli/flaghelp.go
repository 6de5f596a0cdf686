package cli

import (
	"fmt"

	"github.com/spf13/pflag"
)

// parseHelp parses args, answering -h/--help anywhere among them with help
// on stdout (errHelp).
func parseHelp(fs *pflag.FlagSet, args []string, env Env, help string) error {
	for _, a := range args {
		if a == "-h" || a == "--help" {
			fmt.Fprint(env.Stdout, help)
			return errHelp
		}
	}
	return parse(fs, args)
}

// parseNoArgs is parseHelp for a command that takes flags only: an argument
// left over is a usage error naming the command.
func parseNoArgs(fs *pflag.FlagSet, args []string, env Env, help string) error {
	if err := parseHelp(fs, args, env, help); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usageError("%s: unexpected argument %q", fs.Name(), fs.Arg(0))
	}
	return nil
}
