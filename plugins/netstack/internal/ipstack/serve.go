package ipstack

import (
	"log/slog"
	"os"
	"strings"

	"github.com/cellgate/cellgate/sdk"
)

// Serve runs the plugin process: the plugin binary's whole main. The log
// level comes from the environment the agent sets (sdk.LogLevelEnv).
func Serve() {
	level := slog.LevelInfo
	switch strings.ToLower(os.Getenv(sdk.LogLevelEnv)) {
	case "trace", "debug":
		level = slog.LevelDebug
	case "warn":
		level = slog.LevelWarn
	case "error":
		level = slog.LevelError
	}
	sdk.Serve(New(sdk.NewLogger(level)))
}
