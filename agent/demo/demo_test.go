package demo

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cellgate/cellgate/internal/testutil"
)

// TestDemoDeliversReadings runs the quickstart for a few seconds, as `make
// demo` does, and checks that the subscriber printed readings arriving and
// that everything stopped and cleaned up.
func TestDemoDeliversReadings(t *testing.T) {
	dir := ".demo"
	out, stop := startDemo(t, Options{Rate: 50})

	total := regexp.MustCompile(`total (\d+)`)
	testutil.Eventually(t, 60*time.Second, "the subscriber to count 40 readings", func() bool {
		m := total.FindAllStringSubmatch(out.String(), -1)
		if len(m) == 0 {
			return false
		}
		n, _ := strconv.Atoi(m[len(m)-1][1])
		return n >= 40
	})
	if err := stop(); err != nil {
		t.Fatalf("demo ended with %v", err)
	}
	if !strings.Contains(out.String(), "demo: stopped:") {
		t.Fatal("no summary at the end")
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("demo left %s behind (%v)", dir, err)
	}
}

// startDemo runs the quickstart as `make demo` does (in a fresh working
// directory, with the relative directory .demo, 115200 baud and the
// sim7600 plugin built for the test) with o's other options. It returns
// the demo's output and stop, which ends the demo and returns Run's
// result; the demo is stopped at the latest when the test ends, and its
// output logged if the test failed.
func startDemo(t *testing.T, o Options) (*testutil.SyncBuffer, func() error) {
	t.Helper()
	bin := testutil.Build(t, testutil.PluginSim7600)
	t.Chdir(t.TempDir())
	out := &testutil.SyncBuffer{}
	o.Dir, o.PluginDir, o.Baud, o.Out, o.Log = ".demo", filepath.Dir(bin), 115200, out, slog.New(slog.DiscardHandler)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, o) }()
	stop := sync.OnceValue(func() error { cancel(); return <-done })
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("demo output:\n%s", out.String())
		}
	})
	return out, stop
}
