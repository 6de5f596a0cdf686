package simcom

import (
	"log/slog"
	"os"
	"strings"

	"github.com/cellgate/cellgate/sdk"
)

// Serve runs a plugin process for the model p: the plugin binaries'
// whole main. The log level comes from the environment the agent sets
// (sdk.LogLevelEnv).
func Serve(p Profile) {
	level := slog.LevelInfo
	switch strings.ToLower(os.Getenv(sdk.LogLevelEnv)) {
	case "trace", "debug":
		level = slog.LevelDebug
	case "warn":
		level = slog.LevelWarn
	case "error":
		level = slog.LevelError
	}
	sdk.Serve(New(p, sdk.NewLogger(level)))
}
