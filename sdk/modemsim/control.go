package modemsim

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"time"
)

// controlServer serves the line protocol of README.md on a unix socket:
// one request line, one answer line ("ok", "error: <why>", or JSON).
type controlServer struct {
	m     *Modem
	l     *net.UnixListener
	path  string
	mu    sync.Mutex
	conns map[net.Conn]struct{}
	once  sync.Once
	err   error
}

// listenControl binds the socket, replacing a stale socket file but never
// any other kind of file.
func listenControl(m *Modem, path string) (*controlServer, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("modemsim: control socket path %s exists and is not a socket", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("modemsim: remove stale control socket %s: %w", path, err)
		}
	}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("modemsim: listen on control socket %s: %w", path, err)
	}
	// The socket file goes away in close, not when the listener closes.
	l.SetUnlinkOnClose(false)
	return &controlServer{m: m, l: l, path: path, conns: make(map[net.Conn]struct{})}, nil
}

func (cs *controlServer) serve(wg *sync.WaitGroup) {
	defer wg.Done()
	for {
		c, err := cs.l.Accept()
		if err != nil {
			return
		}
		cs.mu.Lock()
		if cs.conns == nil {
			cs.mu.Unlock()
			c.Close()
			return
		}
		cs.conns[c] = struct{}{}
		cs.mu.Unlock()
		wg.Add(1)
		go cs.handle(c, wg)
	}
}

func (cs *controlServer) handle(c net.Conn, wg *sync.WaitGroup) {
	defer wg.Done()
	defer func() {
		cs.mu.Lock()
		delete(cs.conns, c)
		cs.mu.Unlock()
		c.Close()
	}()
	sc := bufio.NewScanner(c)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		answer := cs.exec(line)
		c.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if _, err := fmt.Fprintln(c, answer); err != nil {
			return
		}
	}
}

// exec answers one request.
func (cs *controlServer) exec(line string) string {
	cmd, rest, _ := strings.Cut(line, " ")
	switch cmd {
	case "fault":
		f, err := ParseFault(rest)
		if err == nil {
			err = cs.m.Fault(f)
		}
		if err != nil {
			return "error: " + oneLine(err)
		}
		return "ok"
	case "counters":
		b, err := json.Marshal(cs.m.Counters())
		if err != nil {
			return "error: " + oneLine(err)
		}
		return string(b)
	case "path":
		return cs.m.Path()
	case "help":
		return "ok commands: fault <kind> [arg] | counters | path | help"
	}
	return fmt.Sprintf("error: unknown command %q (try help)", cmd)
}

func oneLine(err error) string { return strings.ReplaceAll(err.Error(), "\n", "; ") }

// close stops accepting, ends open control connections and removes the
// socket file.
func (cs *controlServer) close() error {
	cs.once.Do(func() {
		var errs []error
		if err := cs.l.Close(); err != nil {
			errs = append(errs, fmt.Errorf("modemsim: close control socket: %w", err))
		}
		cs.mu.Lock()
		for c := range cs.conns {
			c.Close()
		}
		cs.conns = nil
		cs.mu.Unlock()
		if err := os.Remove(cs.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("modemsim: remove control socket %s: %w", cs.path, err))
		}
		cs.err = errors.Join(errs...)
	})
	return cs.err
}
