package demo

import (
	"strings"
	"testing"
	"time"

	"github.com/cellgate/cellgate/internal/testutil"
)

// TestDemoRotatesOnce runs the quickstart with DEMO_ROTATE=1's option and
// checks that it shows one rotation, done, while readings keep arriving.
func TestDemoRotatesOnce(t *testing.T) {
	out, stop := startDemo(t, Options{Rate: 20, Rotate: true})
	testutil.Eventually(t, 120*time.Second, "the demo to show the rotation's outcome", func() bool {
		return strings.Contains(out.String(), "rotation: new key made") || strings.Contains(out.String(), "rotation: rolled back")
	})
	if !strings.Contains(out.String(), "rotation: new key made") {
		t.Fatal("the demo's rotation rolled back")
	}
	after := strings.Count(out.String(), "subscriber:")
	testutil.Eventually(t, 60*time.Second, "readings to keep arriving after the rotation", func() bool {
		return strings.Count(out.String(), "subscriber:") > after+2
	})
	if err := stop(); err != nil {
		t.Fatalf("demo ended with %v", err)
	}
}
