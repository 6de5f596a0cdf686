package sdk_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cellgate/cellgate/sdk"
)

// envHost makes the test binary an agent stand-in: it launches the double
// as a plugin, prints the plugin's pid, and waits to be killed.
const envHost = "SDK_TEST_HOST"

func runHost() {
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "host:", err)
		os.Exit(1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p, err := sdk.Launch(ctx, sdk.LaunchConfig{
		Path:   self,
		Env:    []string{envPlugin + "=double", envHost + "=", raceEnv()},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "host:", err)
		os.Exit(1)
	}
	fmt.Println(p.PID())
	<-ctx.Done()
	os.Exit(1)
}

// TestPluginStopsWhenTheAgentIsKilled proves that an agent killed with
// SIGKILL does not leave its plugin behind holding the serial port: the
// plugin gets SIGTERM from the kernel, stops the modem and exits.
func TestPluginStopsWhenTheAgentIsKilled(t *testing.T) {
	ctl := newControl(t)
	ctx := testCtx(t)
	host := exec.CommandContext(ctx, selfPath(t))
	host.Env = append(os.Environ(), envHost+"=1", ctl.env())
	out, err := host.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := host.Start(); err != nil {
		t.Fatalf("starting the agent stand-in: %v", err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		_ = host.Process.Kill()
		_ = host.Wait()
		t.Fatalf("reading the plugin pid from the agent stand-in: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatalf("agent stand-in printed %q, want a pid", line)
	}
	if err := host.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = host.Wait()

	if line, err := ctl.next(ctx); err != nil || line != "stopped" {
		t.Fatalf("orphaned plugin reported %q, %v; want stopped", line, err)
	}
	for alive(pid) {
		select {
		case <-ctx.Done():
			_ = syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("plugin pid %d still runs after its agent was killed", pid)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// alive reports whether pid is a running process. An exited process that
// nobody reaped yet (a zombie, possible in a container without init) counts
// as gone.
func alive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if errors.Is(err, os.ErrNotExist) {
		return false
	}
	// The state follows the parenthesised command name.
	if i := strings.LastIndexByte(string(stat), ')'); i >= 0 && i+2 < len(stat) {
		return stat[i+2] != 'Z'
	}
	return true
}
