package conformance_test

import (
	"context"
	"log"
	"os"

	"github.com/cellgate/cellgate/sdk/conformance"
)

// Certify a plugin binary against an emulated Quectel BG96, a fresh one for
// each check, and print the table; the exit status follows the verdict.
func ExampleRun() {
	rep, err := conformance.Run(context.Background(), conformance.Config{
		Plugin:   "./cellgate-plugin-bg96",
		Model:    "bg96",
		Emulator: "bg96",
	}, nil)
	if err != nil {
		log.Fatal(err) // a Config that cannot run
	}
	rep.WriteTable(os.Stdout)
	if !rep.Passed {
		os.Exit(1)
	}
}
