package simcom

import (
	"github.com/cellgate/cellgate/sdk"
)

// Serve runs a plugin process for the model p: the plugin binaries'
// whole main. The log level comes from the environment the agent sets
// (sdk.LogLevelEnv).
func Serve(p Profile) {
	sdk.Serve(New(p, sdk.NewLogger(sdk.LogLevel())))
}
