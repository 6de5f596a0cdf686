// Package testutil holds what the agent's end-to-end tests share: building
// the real binaries, free loopback ports, waiting for a server process to
// listen, and a goroutine-safe buffer for a child process's output.
package testutil

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// Binary is one program to build: the output file name and its package.
type Binary struct {
	Name, Package string
}

// Cellgate and PluginSim7600 are the binaries most end-to-end tests run.
var (
	Cellgate      = Binary{"cellgate", "github.com/cellgate/cellgate/cmd/cellgate"}
	PluginSim7600 = Binary{"cellgate-plugin-sim7600", "github.com/cellgate/cellgate/plugins/sim7600"}
)

// BuildOnce returns a function that builds bins into one fresh directory the
// first time it is called and returns that directory (and the first error)
// ever after. Putting the plugin beside cellgate is how an installed tree
// looks. The caller removes the directory (see Cleanup).
func BuildOnce(bins ...Binary) func() (string, error) {
	return sync.OnceValues(func() (string, error) {
		dir, err := os.MkdirTemp("", "cellgate-test-bin-")
		if err != nil {
			return "", err
		}
		for _, b := range bins {
			cmd := exec.Command("go", "build", "-o", filepath.Join(dir, b.Name), b.Package)
			if out, err := cmd.CombinedOutput(); err != nil {
				return dir, fmt.Errorf("build %s: %v\n%s", b.Package, err, out)
			}
		}
		return dir, nil
	})
}

// Cleanup removes what a BuildOnce function built, if it ran; for TestMain.
func Cleanup(built func() (string, error)) {
	if dir, _ := built(); dir != "" {
		os.RemoveAll(dir)
	}
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago, for
// servers that cannot be handed a listener (child processes).
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// WaitListening polls addr until a TCP connection succeeds or within
// passes. It is for processes the test does not control (openssl,
// mosquitto), which offer no readiness signal.
func WaitListening(addr string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nothing listens on %s after %s: %w", addr, within, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// SyncBuffer is a bytes.Buffer safe for concurrent writers and readers,
// for a child process's combined output.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
