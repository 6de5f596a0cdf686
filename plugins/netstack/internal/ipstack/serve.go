package ipstack

import (
	"github.com/cellgate/cellgate/sdk"
)

// Serve runs the plugin process: the plugin binary's whole main. The log
// level comes from the environment the agent sets (sdk.LogLevelEnv).
func Serve() {
	sdk.Serve(New(sdk.NewLogger(sdk.LogLevel())))
}
