// Command cellgate is the cellgate edge agent and its operator's tool; see
// agent/cli for the commands.
package main

import (
	"os"

	"github.com/cellgate/cellgate/agent/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], cli.Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr}))
}
