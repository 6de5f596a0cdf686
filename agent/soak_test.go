package agent_test

// The chaos soak: the whole data path with real parts (the agent and its
// sim7600 plugin, the emulated modem, mosquitto with mutual TLS, an
// independent subscriber) takes readings at a steady rate through HTTP and
// UDP while faults hit every part of it at random, for as long as SOAK
// says. At the end every reading the inputs accepted is reconciled by id
// against what the subscriber received, and the figures go to a table and
// to soak-report.json (soak_report_test.go). `make test` runs SOAK=2m,
// `SOAK=10m make soak` the long one.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cellgate/cellgate/internal/testutil"
	"github.com/cellgate/cellgate/sdk/modemsim"
	"github.com/cellgate/cellgate/sdk/plugintest"
)

const (
	// soakTmpfsBytes is the size of the tmpfs under the spool: the disk
	// the disk-full fault fills.
	soakTmpfsBytes = 64 << 20
	// soakSmallSpool is spool.max_bytes during the spool-full phases (the
	// smallest the agent accepts).
	soakSmallSpool = "64KiB"
	// soakUDPPrefix starts the id of every reading sent over UDP: the
	// sender chooses UDP ids, the agent assigns HTTP ones.
	soakUDPPrefix = "udp-"
)

// TestSoak is the chaos soak. It runs only when SOAK holds its length
// (a Go duration, at least 30s), because it takes that long plus the
// drain; `make test` always sets SOAK=2m, so CI never skips it. SOAK_SEED
// replays a run's fault sequence; SOAK_REPORT names the JSON report
// (default soak-report.json in the package directory).
func TestSoak(t *testing.T) {
	spec := os.Getenv("SOAK")
	if spec == "" {
		t.Skip("the chaos soak runs only with SOAK=<duration>: `make test` runs it with SOAK=2m, `SOAK=10m make soak` the long one")
	}
	length, err := time.ParseDuration(spec)
	if err != nil || length < 30*time.Second {
		t.Fatalf("SOAK=%q: want a Go duration of at least 30s (2m, 10m)", spec)
	}
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("SOAK_SEED"); v != "" {
		if seed, err = strconv.ParseUint(v, 10, 64); err != nil {
			t.Fatalf("SOAK_SEED=%q: %v", v, err)
		}
	}
	fmt.Printf("soak: %s, seed %d (SOAK_SEED=%d replays the fault sequence)\n", length, seed, seed)
	rng := rand.New(rand.NewPCG(seed, 0x50a4))

	s := newSoak(t)
	s.startFeeders()
	go s.sample()
	go s.trackRecoveries()

	kinds := s.faultKinds()
	// Aimed at 33 of each per 10 minutes, so that the lasting faults (the
	// spool and disk phases, the clock's hold, a restart) running late
	// still leave 30 complete rounds of every kind.
	perKind := max(4, int((33*length+10*time.Minute-1)/(10*time.Minute)))
	warmup := min(10*time.Second, length/6)
	gap := (length - warmup) / time.Duration(perKind*len(kinds))
	fmt.Printf("soak: %d fault kinds, one every %s after a %s warm-up, aiming at %d of each\n", len(kinds), gap, warmup, perKind)

	begin := time.Now()
	s.warmEnd = begin.Add(warmup)
	deadline := begin.Add(length)
	time.Sleep(warmup)
	next := time.Now()
	var deck []*faultKind
	misses := 0 // kinds in a row that did not apply
	for time.Now().Before(deadline) {
		if len(deck) == 0 {
			deck = shuffledRound(kinds, rng)
		}
		if d := time.Until(next); d > 0 {
			time.Sleep(d) // the chaos's own pace, not a wait for a condition
		}
		next = next.Add(gap)
		s.revive()
		k := deck[0]
		deck = deck[1:]
		if s.inject(k, rng) {
			misses = 0
			continue
		}
		// Not applicable now (no session open, plugin restarting): the
		// next kind takes this turn at once, and this one is tried again
		// after it, so that waiting for a session costs the pace nothing.
		// Two misses in a row wait 200 ms, not to spin.
		if len(deck) == 0 {
			deck = shuffledRound(kinds, rng)
		}
		deck = slices.Insert(deck, 1, k)
		next = next.Add(-gap)
		if misses++; misses > 1 {
			next = next.Add(200 * time.Millisecond)
		}
	}
	s.settle()
	s.report(t, seed, length, kinds, perKind)
}

// shuffledRound is one of each kind, in random order.
func shuffledRound(kinds []*faultKind, rng *rand.Rand) []*faultKind {
	round := slices.Clone(kinds)
	rng.Shuffle(len(round), func(i, j int) { round[i], round[j] = round[j], round[i] })
	return round
}

// soak is one soak's parts and its books. The fault loop (the test's
// goroutine) owns the faults' sequence; the feeders, the sampler and the
// recovery tracker run beside it and share the books under mu.
type soak struct {
	t        *testing.T
	bin, dir string
	spoolDir string
	fillPath string // the disk-full filler, beside the spool on the tmpfs
	disk     string // "" if the tmpfs is mounted, else why not
	pki      *plugintest.PKI
	modem    *modemsim.Modem
	broker   *mosquitto
	sub      *subscriber
	httpPort int
	udpPort  int
	ingest   string
	client   *http.Client
	stop     chan struct{}
	feeders  sync.WaitGroup
	warmEnd  time.Time

	// statusPort and statusURL are the status listener's (/v1/status,
	// /metrics).
	statusPort int
	statusURL  string

	// clockJumps counts the clock faults applied, whose direction
	// alternates; the fault loop owns it.
	clockJumps int

	// agentMu guards agent, which the fault loop replaces on a restart.
	agentMu sync.Mutex
	agent   *agentProc
	started time.Time // when agent started

	// udpGate is held for writing while the agent is killed or reloads,
	// so that no datagram is accepted after the last count of UDP readings
	// its old process or generation accepted.
	udpGate sync.RWMutex

	mu        sync.Mutex
	accepted  []acceptedID   // HTTP ids answered 202, in order
	httpPosts int            // HTTP requests begun (the one HTTP feeder posts one at a time)
	refused   map[string]int // HTTP answers other than 202, by status ("conn": no answer)
	udpSent   int            // UDP ids udp-1 … udp-udpSent have been sent
	udpAcc    counterEpochs
	faults    []*faultRecord
	drops     []*dropPhase // the drop_oldest phases, in order
	samples   []memSample
	peakGor   int
	exits     []string // the agent's own exits (not our SIGKILL): the last lines of its log
}

type acceptedID struct {
	id   string
	at   time.Time
	post int // the request's number (soak.httpPosts when it began)
}

// memSample is one reading of the agent's resident memory.
type memSample struct {
	at, since time.Time // since: when that agent process started
	pid       int
	rssKiB    int64
}

// faultRecord is one fault applied. Recovery is from End (the fault's
// instant, or when a lasting fault was lifted) to the first delivery of an
// HTTP reading accepted after End; -1 until seen.
type faultRecord struct {
	kind       string
	start, end time.Time
	detail     string
	triggered  bool // the fault had its effect (spool full seen, disk full refused)
	recovery   time.Duration
}

// counterEpochs sums a counter across the agent's lives: a restart (a new
// pid) or a reset starts a new epoch.
type counterEpochs struct {
	done, cur float64
	pid       int
}

func (c *counterEpochs) observe(pid int, v float64) {
	if pid != c.pid || v < c.cur {
		c.done += c.cur
		c.cur, c.pid = 0, pid
	}
	c.cur = v
}

func (c *counterEpochs) total() float64 { return c.done + c.cur }

func newSoak(t *testing.T) *soak {
	t.Helper()
	bin, err := binaries()
	if err != nil {
		t.Fatal(err)
	}
	s := &soak{t: t, bin: bin, dir: t.TempDir(), refused: map[string]int{}, stop: make(chan struct{}),
		client: &http.Client{Timeout: 15 * time.Second}}
	if err := os.Chmod(s.dir, 0o755); err != nil { // mosquitto may run as its own user
		t.Fatal(err)
	}
	s.mountDisk()
	s.pki = plugintest.NewPKI(t, plugintest.P256)
	s.pki.WriteFiles(t, s.dir)
	// NetworkTime: the modem's clock is right from every boot, as on a
	// registered module, so the plugin has certificate validity checked
	// (ignorelocaltime 0) and a clock jump can bite.
	s.modem, err = modemsim.Start(modemsim.Config{Model: "sim7600", Baud: -1, Link: filepath.Join(s.dir, "ttyUSB2"),
		StateDir: filepath.Join(s.dir, "flash"), NetworkTime: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.modem.Close() })
	s.broker = startMosquitto(t, s.dir, 0)
	s.sub = newSubscriber(t, s.pki, s.broker.addr)
	s.httpPort, s.udpPort = testutil.FreePort(t), testutil.FreePort(t)
	s.ingest = fmt.Sprintf("http://127.0.0.1:%d", s.httpPort)
	s.statusPort = testutil.FreePort(t)
	s.statusURL = fmt.Sprintf("http://127.0.0.1:%d", s.statusPort)
	s.writeConfig("256MiB", "reject")
	s.startAgent()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the last agent's log:\n%s", s.currentAgent().log())
		}
	})
	return s
}

// mountDisk puts the spool on a small tmpfs of its own, so that the
// disk-full fault fills a real file system without touching the host's.
// Without the right to mount, the spool stays in the temporary directory
// and disk_full is reported unavailable.
func (s *soak) mountDisk() {
	mnt := filepath.Join(s.dir, "disk")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		s.t.Fatal(err)
	}
	s.spoolDir = filepath.Join(mnt, "spool")
	s.fillPath = filepath.Join(mnt, "filler")
	if os.Geteuid() != 0 {
		s.disk = "not root: cannot mount a tmpfs"
		return
	}
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, fmt.Sprintf("size=%d,mode=0755", soakTmpfsBytes)); err != nil {
		s.disk = "mount -t tmpfs: " + err.Error()
		return
	}
	// Registered before the agent starts: cleanups run last first, so the
	// agent is stopped before its spool's file system goes.
	s.t.Cleanup(func() { syscall.Unmount(mnt, syscall.MNT_DETACH) })
}

// writeConfig writes the agent's file with the spool limits given; it is
// replaced whole (rename), since the agent may read it at any moment.
func (s *soak) writeConfig(maxBytes, whenFull string) {
	cfg := fmt.Sprintf(`device_id: soak-gw
modem: {model: sim7600, port: %q}
plugins: {dir: %q}
tls: {mode: modem, ca: ca.pem, cert: client.pem, key: client.key}
inputs: {http: {listen: "127.0.0.1:%d"}, udp: {listen: "127.0.0.1:%d"}}
status: {listen: "127.0.0.1:%d"}
spool: {dir: %q, max_bytes: %s, when_full: %s}
uplink:
  mqtt: {broker: "mqtts://%s", topic: "cellgate/{device_id}/telemetry", qos: 1}
  batch: {max_readings: 50, max_delay: 200ms}
log: {level: info}
`, filepath.Join(s.dir, "ttyUSB2"), s.bin, s.httpPort, s.udpPort, s.statusPort, s.spoolDir, maxBytes, whenFull, s.broker.addr)
	tmp := filepath.Join(s.dir, "cellgate.yaml.new")
	if err := os.WriteFile(tmp, []byte(cfg), 0o644); err != nil {
		s.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(s.dir, "cellgate.yaml")); err != nil {
		s.t.Fatal(err)
	}
}

func (s *soak) startAgent() {
	a := startAgent(s.t, s.bin, s.dir)
	s.agentMu.Lock()
	s.agent, s.started = a, time.Now()
	s.agentMu.Unlock()
	testutil.Eventually(s.t, 30*time.Second, "the agent to serve "+s.ingest+"/healthz", func() bool {
		resp, err := s.client.Get(s.ingest + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

func (s *soak) currentAgent() *agentProc {
	s.agentMu.Lock()
	defer s.agentMu.Unlock()
	return s.agent
}

// revive starts the agent again if it exited by itself, as systemd does
// (Restart=on-failure), and books the exit with the end of its log. It
// runs on the fault loop's goroutine, which owns restarts.
func (s *soak) revive() {
	a := s.currentAgent()
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", a.cmd.Process.Pid))
	if err == nil {
		if f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:])); len(f) > 0 && f[0] != "Z" {
			return
		}
	}
	a.cmd.Wait()
	lines := strings.Split(strings.TrimSpace(a.log()), "\n")
	keep := 3
	if strings.Contains(a.log(), "goroutine ") {
		keep = 2000 // a panic or a dump (stallWatch): every goroutine's stack
	}
	tail := strings.Join(lines[max(0, len(lines)-keep):], "\n")
	s.t.Logf("%s  the agent exited by itself (%v); restarting it. Its last lines:\n%s", time.Now().Format("15:04:05.000"), a.cmd.ProcessState, tail)
	s.mu.Lock()
	s.exits = append(s.exits, fmt.Sprintf("%s: %s", a.cmd.ProcessState, lines[len(lines)-1]))
	s.mu.Unlock()
	s.udpGate.Lock()
	defer s.udpGate.Unlock()
	s.startAgent()
}

// --- the readings ---

// startFeeders posts 10 readings over HTTP every 100 ms and sends 5 over
// UDP every 50 ms (about 200 readings/s in all) until s.stop closes.
// Refusals are counted, never fatal: inputs may refuse while the spool or
// the disk is full or the agent restarts; only what they accepted counts.
func (s *soak) startFeeders() {
	s.feeders.Add(2)
	go func() {
		defer s.feeders.Done()
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-s.stop:
				return
			case <-tick.C:
			}
			s.postHTTP(10)
		}
	}()
	go func() {
		defer s.feeders.Done()
		conn, err := net.Dial("udp", fmt.Sprintf("127.0.0.1:%d", s.udpPort))
		if err != nil {
			s.t.Errorf("UDP sender: %v", err)
			return
		}
		defer conn.Close()
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		seq := 0
		for {
			select {
			case <-s.stop:
				return
			case <-tick.C:
			}
			var b bytes.Buffer
			for range 5 {
				seq++
				fmt.Fprintf(&b, `{"id":"%s%d","sensor":"soak","value":%d,"tags":{"via":"udp"}}`+"\n", soakUDPPrefix, seq, seq%100)
			}
			s.udpGate.RLock()
			conn.Write(b.Bytes()) // fire and forget: the agent's count says what it took
			s.udpGate.RUnlock()
			s.mu.Lock()
			s.udpSent += 5
			s.mu.Unlock()
		}
	}()
}

func (s *soak) postHTTP(n int) {
	s.mu.Lock()
	post := s.httpPosts
	s.httpPosts++
	s.mu.Unlock()
	var body bytes.Buffer
	body.WriteByte('[')
	for i := range n {
		if i > 0 {
			body.WriteByte(',')
		}
		fmt.Fprintf(&body, `{"sensor":"soak","value":%d.5,"unit":"C","tags":{"via":"http"}}`, i)
	}
	body.WriteByte(']')
	resp, err := s.client.Post(s.ingest+"/v1/readings", "application/json", &body)
	if err != nil {
		s.mu.Lock()
		s.refused["conn"]++
		s.mu.Unlock()
		return
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	now := time.Now()
	var out struct {
		IDs []string `json:"ids"`
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if resp.StatusCode != http.StatusAccepted {
		s.refused[strconv.Itoa(resp.StatusCode)]++
		return
	}
	if err := json.Unmarshal(b, &out); err != nil || len(out.IDs) != n {
		s.t.Errorf("202 without %d ids: %s", n, b)
		return
	}
	for _, id := range out.IDs {
		s.accepted = append(s.accepted, acceptedID{id, now, post})
	}
}

func (s *soak) refusals() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for k, v := range s.refused {
		if k != "conn" {
			n += v
		}
	}
	return n
}

// --- the agent's own figures ---

type soakStatus struct {
	Spool struct {
		Pending          int    `json:"pending_readings"`
		DamagedUncounted uint64 `json:"damaged_uncounted_regions"`
		Dropped          struct {
			Damaged         uint64 `json:"damaged"`
			DropOldest      uint64 `json:"drop_oldest"`
			RefusedUpstream uint64 `json:"refused_upstream"`
		} `json:"dropped"`
	} `json:"spool"`
}

func (s *soak) status() (soakStatus, error) {
	var st soakStatus
	resp, err := s.client.Get(s.statusURL + "/v1/status")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("GET /v1/status: %s", resp.Status)
	}
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// metrics returns the agent's goroutines and its UDP input's accepted
// readings from /metrics.
func (s *soak) metrics() (goroutines int, udpAccepted float64, err error) {
	resp, err := s.client.Get(s.statusURL + "/metrics")
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	found := 0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "go_goroutines "):
			goroutines, _ = strconv.Atoi(strings.Fields(line)[1])
			found++
		case strings.HasPrefix(line, "cellgate_input_accepted_readings_total{") && strings.Contains(line, `input="datagram"`):
			f := strings.Fields(line)
			udpAccepted, _ = strconv.ParseFloat(f[len(f)-1], 64)
			found++
		}
	}
	if found < 2 {
		return 0, 0, errors.New("/metrics lacks go_goroutines or the UDP input's accepted readings")
	}
	return goroutines, udpAccepted, sc.Err()
}

// observeUDP records the UDP input's accepted count of the agent running
// now.
func (s *soak) observeUDP() (float64, error) {
	a := s.currentAgent()
	_, v, err := s.metrics()
	if err != nil {
		return 0, err
	}
	s.mu.Lock()
	s.udpAcc.observe(a.cmd.Process.Pid, v)
	s.mu.Unlock()
	return v, nil
}

// sample reads the agent's RSS (/proc) and goroutines (/metrics) every
// second until the soak stops.
func (s *soak) sample() {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-tick.C:
		}
		s.agentMu.Lock()
		pid, since := s.agent.cmd.Process.Pid, s.started
		s.agentMu.Unlock()
		rss := rssKiB(pid)
		gor, udp, err := s.metrics()
		s.mu.Lock()
		if rss > 0 {
			s.samples = append(s.samples, memSample{at: time.Now(), since: since, pid: pid, rssKiB: rss})
		}
		if err == nil {
			s.peakGor = max(s.peakGor, gor)
			s.udpAcc.observe(pid, udp)
		}
		s.mu.Unlock()
	}
}

// rssKiB reads VmRSS of pid, or 0 if the process is gone.
func rssKiB(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			v, _ := strconv.ParseInt(f[1], 10, 64)
			return v
		}
	}
	return 0
}

// trackRecoveries sets each fault's recovery time: the first delivery of
// an HTTP reading accepted after the fault ended. It polls the
// subscriber every 20 ms, the figures' resolution.
func (s *soak) trackRecoveries() {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-tick.C:
		}
		s.checkRecoveries()
	}
}

func (s *soak) checkRecoveries() {
	now := time.Now()
	s.mu.Lock()
	accepted := s.accepted
	var open []*faultRecord
	for _, f := range s.faults {
		if f.recovery < 0 && now.After(f.end) {
			open = append(open, f)
		}
	}
	s.mu.Unlock()
	for _, f := range open {
		i := sort.Search(len(accepted), func(i int) bool { return !accepted[i].at.Before(f.end) })
		window := accepted[i:min(i+2000, len(accepted))]
		s.sub.mu.Lock()
		seen := false
		for _, a := range window {
			if s.sub.seen[a.id] > 0 {
				seen = true
				break
			}
		}
		s.sub.mu.Unlock()
		if seen {
			s.mu.Lock()
			f.recovery = now.Sub(f.end)
			s.mu.Unlock()
		}
	}
}

// settle ends the chaos: the network comes back, the feeders run until
// every fault has been followed by a delivery (or 2 minutes pass), then
// stop, and the last count of UDP readings accepted is taken once the
// input has appended what it received.
func (s *soak) settle() {
	s.modem.Fault(modemsim.Fault{Kind: modemsim.FaultNetworkRestore}) // fails if the network is up: fine
	testutil.WaitFor(2*time.Minute, func() bool {
		s.revive()
		s.checkRecoveries()
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, f := range s.faults {
			if f.recovery < 0 {
				return false
			}
		}
		return true
	})
	close(s.stop)
	s.feeders.Wait()
	s.stableUDPCount()
}

// stableUDPCount reads the UDP accepted count until two readings 300 ms
// apart agree (the input has appended what it received), for up to 5 s.
func (s *soak) stableUDPCount() {
	last := -1.0
	testutil.WaitFor(5*time.Second, func() bool {
		time.Sleep(300 * time.Millisecond) // the interval between the two readings compared
		v, err := s.observeUDP()
		if err != nil {
			return false
		}
		same := v == last
		last = v
		return same
	})
}
