package buildinfo

import (
	"runtime"
	"strings"
	"testing"
)

// A stamped build reports exactly the stamps, and the line carries each.
func TestStampedBuildReportsItsStamps(t *testing.T) {
	defer stamp("1.2.3-rc.1", "0123456789ab-dirty", "2026-11-24T09:00:00Z")()
	i := Get()
	if i.Version != "1.2.3-rc.1" || i.Commit != "0123456789ab-dirty" || i.Date != "2026-11-24T09:00:00Z" {
		t.Errorf("Get() = %+v, want the stamps", i)
	}
	line := i.String()
	for _, want := range []string{"cellgate 1.2.3-rc.1 (", "commit 0123456789ab-dirty", "2026-11-24T09:00:00Z", runtime.Version(), runtime.GOOS + "/" + runtime.GOARCH} {
		if !strings.Contains(line, want) {
			t.Errorf("String() = %q, missing %q", line, want)
		}
	}
}

// A test binary is not stamped: it says "devel", never an empty version.
func TestUnstampedBuildSaysDevel(t *testing.T) {
	defer stamp("", "", "")()
	i := Get()
	if i.Version != "devel" {
		t.Errorf("Version = %q, want devel", i.Version)
	}
	if !strings.HasPrefix(i.String(), "cellgate devel (") {
		t.Errorf("String() = %q", i.String())
	}
}

// stamp sets the link-time variables as -X would and returns the undo.
func stamp(v, c, d string) func() {
	ov, oc, od := version, commit, date
	version, commit, date = v, c, d
	return func() { version, commit, date = ov, oc, od }
}
