// Package buildinfo says which cellgate a binary is: the version, commit and
// date the release build stamped into it (scripts/package.sh, with -ldflags
// -X), and the Go toolchain and platform it was built with.
//
// A binary built without stamps (go build, go test) still says where it came
// from: its version is "devel" and the commit and date are read from the VCS
// information the go command records, when there is any.
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
)

// Set by the release build with
//
//	-ldflags "-X github.com/cellgate/cellgate/internal/buildinfo.version=…"
//
// (and .commit, .date). Left empty by a plain go build.
var (
	version string // semantic version, without a leading "v": 0.1.0, 1.2.0-rc.1
	commit  string // the commit hash, "-dirty" appended when the tree had changes
	date    string // RFC 3339 UTC: the commit's time, so a rebuild is identical
)

// Info describes one build.
type Info struct {
	Version   string // "devel" when the build was not stamped
	Commit    string // "" when unknown
	Date      string // RFC 3339; "" when unknown
	GoVersion string // runtime.Version()
	Platform  string // GOOS/GOARCH, with the ARM version for GOARCH=arm
}

// Get returns the running binary's build information.
func Get() Info {
	i := Info{Version: version, Commit: commit, Date: date, GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	bi, ok := debug.ReadBuildInfo()
	if ok {
		for _, s := range bi.Settings {
			switch {
			case s.Key == "GOARM" && runtime.GOARCH == "arm":
				i.Platform += "/v" + s.Value
			case s.Key == "vcs.revision" && i.Commit == "":
				i.Commit = s.Value
			case s.Key == "vcs.time" && i.Date == "":
				i.Date = s.Value
			}
		}
	}
	if i.Version == "" {
		i.Version = "devel"
	}
	return i
}

// String is the one line `cellgate version` prints, for example
// "cellgate 0.1.0 (commit 1a2b3c4d5e6f, 2026-11-24T09:00:00Z, go1.26.8, linux/arm64)".
func (i Info) String() string {
	parts := []string{}
	if i.Commit != "" {
		parts = append(parts, "commit "+i.Commit)
	}
	if i.Date != "" {
		parts = append(parts, i.Date)
	}
	parts = append(parts, i.GoVersion, i.Platform)
	return fmt.Sprintf("cellgate %s (%s)", i.Version, strings.Join(parts, ", "))
}
