// Command cellgate-plugin-bg96 is a cellgate modem plugin for Quectel BG96
// (and BG95) modules, built only on the public SDK (sdk, sdk/at,
// sdk/atkit). The agent starts it (modem.model: bg96); run by hand it
// explains that and exits. See README.md.
package main

import (
	"github.com/cellgate/cellgate/examples/quectel-bg96/bg96"
	"github.com/cellgate/cellgate/sdk"
)

func main() { sdk.Serve(bg96.New(sdk.NewLogger(sdk.LogLevel()))) }
