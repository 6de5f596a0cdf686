// Package testutil is the one home of what the project's tests share:
// building the real binaries, free loopback ports, waiting for a condition
// or for a server process to listen, a goroutine-safe buffer for a child
// process's output or a component's log, and a test logger writing to one.
// The development PKI is internal/devpki (sdk/plugintest wraps it).
package testutil

import (
	"bufio"
	"bytes"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Binary is one program to build: the output file name and its package.
type Binary struct {
	Name, Package string
}

// Cellgate and the plugins are the binaries the end-to-end and conformance
// tests run.
var (
	Cellgate      = Binary{"cellgate", "github.com/cellgate/cellgate/cmd/cellgate"}
	PluginSim7600 = Binary{"cellgate-plugin-sim7600", "github.com/cellgate/cellgate/plugins/sim7600"}
	PluginSim7800 = Binary{"cellgate-plugin-sim7800", "github.com/cellgate/cellgate/plugins/sim7800"}
)

// BuildOnce returns a function that builds bins into one fresh directory the
// first time it is called and returns that directory (and the first error)
// ever after. Putting the plugin beside cellgate is how an installed tree
// looks. The binaries are built without the race detector, whatever the
// test's build: end-to-end tests run them, they do not examine them. Main
// removes the directory.
func BuildOnce(bins ...Binary) func() (string, error) {
	return sync.OnceValues(func() (string, error) {
		dir, err := os.MkdirTemp("", "cellgate-test-bin-")
		if err != nil {
			return "", err
		}
		built.add(dir)
		for _, b := range bins {
			if err := build(dir, b, nil); err != nil {
				return dir, err
			}
		}
		return dir, nil
	})
}

// built holds the directories BuildOnce made, for Main to remove.
var built builtDirs

type builtDirs struct {
	mu   sync.Mutex
	dirs []string
}

func (b *builtDirs) add(dir string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.dirs = append(b.dirs, dir)
}

// Main is the TestMain of packages that use BuildOnce: it runs the tests,
// removes what BuildOnce built (nothing if no test asked), and exits with
// the tests' status.
func Main(m *testing.M) {
	code := m.Run()
	built.mu.Lock()
	for _, dir := range built.dirs {
		os.RemoveAll(dir)
	}
	built.mu.Unlock()
	os.Exit(code)
}

// Build builds b into a temporary directory of t and returns the binary's
// path, failing t if it does not build. A test built with -race builds b
// with -race too, so that the binary under test is examined as closely as
// the test: run it with RaceEnv, and a race kills it at once.
func Build(t testing.TB, b Binary) string {
	t.Helper()
	var flags []string
	if raceEnabled {
		flags = []string{"-race"}
	}
	dir := t.TempDir()
	if err := build(dir, b, flags); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, b.Name)
}

// RaceEnv is the environment for a binary from Build: under the race
// detector, the first race ends the process, and it ends without delay.
var RaceEnv = []string{"GORACE=halt_on_error=1 atexit_sleep_ms=0"}

func build(dir string, b Binary, flags []string) error {
	args := append(append([]string{"build"}, flags...), "-o", filepath.Join(dir, b.Name), b.Package)
	if out, err := exec.Command("go", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("build %s: %v\n%s", b.Package, err, out)
	}
	return nil
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

// Eventually calls cond until it returns true, and fails t, naming what it
// waited for, if within passes first. It is for conditions that come with
// no signal to wait on (another process's state, a counter); a channel or
// a hook is better where there is one. Like t.Fatal, it must be called
// from the goroutine running the test.
func Eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	if !poll(within, nil, cond) {
		t.Fatalf("still waiting after %s for %s", within, what)
	}
}

// WaitFor calls cond until it returns true (true), or until within passes
// (false). It is Eventually for a caller to whom a condition that never
// comes is an outcome to report, not a failure: a fault that does not take,
// a drain that may not finish. Unlike Eventually it may be called from any
// goroutine.
func WaitFor(within time.Duration, cond func() bool) bool {
	return poll(within, nil, cond)
}

// WaitListening waits until a TCP socket listens on addr's port, for up to
// within, and returns an error if none does, or as soon as exited is
// closed (nil: never). It is for processes the test does not control
// (openssl, mosquitto), which offer no readiness signal. It reads the
// kernel's socket tables (Linux) instead of connecting, because a probe
// connection would be a client to the server (`openssl s_server -naccept
// 1` would serve it and exit).
func WaitListening(addr string, within time.Duration, exited <-chan struct{}) error {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	port, err := strconv.ParseUint(p, 10, 16)
	if err != nil {
		return fmt.Errorf("port of %s: %w", addr, err)
	}
	var readErr error
	ok := poll(within, exited, func() bool {
		var found bool
		found, readErr = listening(uint16(port))
		return found || readErr != nil
	})
	switch {
	case readErr != nil:
		return readErr
	case ok:
		return nil
	}
	select {
	case <-exited:
		return fmt.Errorf("the process exited before listening on %s", addr)
	default:
		return fmt.Errorf("nothing listens on %s after %s", addr, within)
	}
}

// listening reports whether a TCP socket on port is in state LISTEN.
func listening(port uint16) (bool, error) {
	want := fmt.Sprintf(":%04X", port)
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		f, err := os.Open(table)
		if err != nil {
			return false, fmt.Errorf("read the socket table: %w", err)
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			// sl local_address rem_address st …; st 0A is LISTEN.
			fields := strings.Fields(sc.Text())
			if len(fields) > 3 && strings.HasSuffix(fields[1], want) && fields[3] == "0A" {
				f.Close()
				return true, nil
			}
		}
		f.Close()
	}
	return false, nil
}

// poll calls cond until it returns true (true), or until within passes or
// stop is closed (false). The pause between calls doubles from 1 ms to
// 10 ms: a condition that holds soon is seen soon, and one that holds
// later is seen within 10 ms of holding.
func poll(within time.Duration, stop <-chan struct{}, cond func() bool) bool {
	deadline := time.Now().Add(within)
	pause := time.Millisecond
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		timer := time.NewTimer(pause)
		select {
		case <-stop:
			timer.Stop()
			return false
		case <-timer.C:
		}
		pause = min(2*pause, 10*time.Millisecond)
	}
	return true
}

// SyncBuffer is a bytes.Buffer safe for concurrent writers and readers:
// a child process's output, a component's log or trace.
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

// Reset forgets everything written so far.
func (b *SyncBuffer) Reset() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Reset()
}

// Logger returns a debug-level text logger and the buffer it writes to.
// The log is printed (t.Log) at cleanup if the test failed. It does not
// log through t directly because components log from their own
// goroutines, which may outlive the test by a moment.
func Logger(t testing.TB) (*slog.Logger, *SyncBuffer) {
	t.Helper()
	buf := &SyncBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("log:\n%s", buf.String())
		}
	})
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})), buf
}
