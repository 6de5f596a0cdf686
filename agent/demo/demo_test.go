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
	bin := testutil.Build(t, testutil.PluginSim7600)
	// `make demo` runs with the relative directory .demo.
	t.Chdir(t.TempDir())
	dir := ".demo"
	out := &testutil.SyncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{Dir: dir, PluginDir: filepath.Dir(bin), Rate: 50, Baud: 115200, Out: out, Log: slog.New(slog.DiscardHandler)})
	}()
	stop := sync.OnceValue(func() error { cancel(); return <-done })
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("demo output:\n%s", out.String())
		}
	})

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
