package cli_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cellgate/cellgate/internal/testutil"
)

// startRun starts `cellgate run --config cfgPath` from bin with env
// (KEY=VALUE) on top of the test's, kills it when the test ends and logs
// its stderr then if the test failed; the stderr it returns fills as the
// agent writes.
func startRun(t *testing.T, bin, cfgPath string, env ...string) *testutil.SyncBuffer {
	t.Helper()
	cmd := exec.Command(filepath.Join(bin, "cellgate"), "run", "--config", cfgPath)
	stderr := &testutil.SyncBuffer{}
	cmd.Stderr = stderr
	cmd.Env = append(os.Environ(), env...)
	startUntilEnd(t, cmd, "agent stderr", stderr)
	return stderr
}

// startUntilEnd starts cmd and kills it when the test ends; if the test
// failed, it then logs out (where cmd writes) as what.
func startUntilEnd(t *testing.T, cmd *exec.Cmd, what string, out fmt.Stringer) {
	t.Helper()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("%s:\n%s", what, out.String())
		}
	})
}

// runBinary runs the program at path with args, stdin and env (KEY=VALUE)
// on top of the test's, for at most timeout, and returns stdout, stderr and
// the exit code; a program that cannot run fails t.
func runBinary(t *testing.T, timeout time.Duration, path string, env []string, stdin string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run %s: %v", filepath.Base(path), err)
	}
	return stdout.String(), stderr.String(), code
}
