package demo

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cellgate/cellgate/internal/testutil"
)

// TestDemoRotatesOnce runs the quickstart with DEMO_ROTATE=1's option and
// checks that it shows one rotation, done, while readings keep arriving.
func TestDemoRotatesOnce(t *testing.T) {
	bin := testutil.Build(t, testutil.PluginSim7600)
	t.Chdir(t.TempDir())
	out := &testutil.SyncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{Dir: ".demo", PluginDir: filepath.Dir(bin), Rate: 20, Baud: 115200, Out: out, Log: slog.New(slog.DiscardHandler), Rotate: true})
	}()
	stop := sync.OnceValue(func() error { cancel(); return <-done })
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("demo output:\n%s", out.String())
		}
	})
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
