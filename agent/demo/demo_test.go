package demo

import (
	"bytes"
	"context"
	"log/slog"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/cellgate/cellgate/internal/testutil"
)

// TestDemoDeliversReadings runs the quickstart for a few seconds, as `make
// demo` does, and checks that the subscriber printed readings arriving and
// that everything stopped and cleaned up.
func TestDemoDeliversReadings(t *testing.T) {
	bin := t.TempDir()
	if out, err := exec.Command("go", "build", "-o", filepath.Join(bin, "cellgate-plugin-sim7600"), "github.com/cellgate/cellgate/plugins/sim7600").CombinedOutput(); err != nil {
		t.Fatalf("build plugin: %v\n%s", err, out)
	}
	// `make demo` runs with the relative directory .demo.
	t.Chdir(t.TempDir())
	dir := ".demo"
	out := &testutil.SyncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{Dir: dir, PluginDir: bin, Rate: 50, Baud: 115200, Out: out, Log: slog.New(slog.DiscardHandler)})
	}()
	total := regexp.MustCompile(`total (\d+)`)
	deadline := time.Now().Add(60 * time.Second)
	for {
		m := total.FindAllStringSubmatch(out.String(), -1)
		if len(m) > 0 {
			if n, _ := strconv.Atoi(m[len(m)-1][1]); n >= 40 {
				break
			}
		}
		if time.Now().After(deadline) {
			cancel()
			<-done
			t.Fatalf("the subscriber did not see 40 readings within 60 s; demo output:\n%s", out.String())
		}
		time.Sleep(100 * time.Millisecond) // polling the demo's printed tally
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("demo ended with %v; output:\n%s", err, out.String())
	}
	if !bytes.Contains([]byte(out.String()), []byte("demo: stopped:")) {
		t.Fatalf("no summary at the end:\n%s", out.String())
	}
	if _, err := exec.Command("test", "-e", dir).CombinedOutput(); err == nil {
		t.Fatalf("demo left %s behind", dir)
	}
}
