package fleet

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"

	"github.com/cellgate/cellgate/internal/devpki"
)

// Options configure a fleet run.
type Options struct {
	// Bin holds cellgate, modemsim and cellgate-plugin-sim7600 (make build).
	Bin string
	// Steps are the fleet sizes, run one after another.
	Steps []int
	// Duration is how long each step is measured, after every agent has
	// delivered a first message.
	Duration time.Duration
	// Rate is each agent's demo input, readings/s.
	Rate float64
	// Log receives progress.
	Log *slog.Logger
}

// Role is one of a gateway's processes.
type Role struct {
	CPUPercent float64 `json:"cpu_percent"`
	RSSMiB     float64 `json:"rss_mib"`
}

// Step is what one fleet size cost: per-agent means of each process, and
// the broker's side.
type Step struct {
	Agents          int     `json:"agents"`
	Seconds         float64 `json:"seconds"`
	Agent           Role    `json:"agent"`
	Plugin          Role    `json:"plugin"`
	Modemsim        Role    `json:"modemsim"`
	AgentPlusPlugin Role    `json:"agent_plus_plugin"`
	Broker          Role    `json:"broker"`
	BrokerMsgsPerS  float64 `json:"broker_messages_per_s"`
	ReadingsPerS    float64 `json:"readings_per_s_offered"`
}

// Report is bench/fleet.json.
type Report struct {
	Rate  float64 `json:"rate_per_agent"`
	Steps []Step  `json:"steps"`
	// CPURatio and RSSRatio are the per-agent (agent + plugin) CPU and RSS
	// at the largest fleet over the smallest: flat cost is about 1.
	CPURatio *float64 `json:"cpu_per_agent_ratio_largest_to_smallest"`
	RSSRatio *float64 `json:"rss_per_agent_ratio_largest_to_smallest"`
}

// Run runs every step and returns the report. Every process it started is
// stopped and every directory it made is removed before it returns, also
// when ctx ends early (Ctrl-C).
func Run(ctx context.Context, o Options) (Report, error) {
	r := Report{Rate: o.Rate}
	for _, n := range o.Steps {
		s, err := runStep(ctx, o, n)
		if err != nil {
			return r, fmt.Errorf("fleet of %d: %w", n, err)
		}
		r.Steps = append(r.Steps, s)
	}
	if len(r.Steps) > 1 {
		first, last := r.Steps[0], r.Steps[len(r.Steps)-1]
		if first.AgentPlusPlugin.CPUPercent > 0 {
			v := last.AgentPlusPlugin.CPUPercent / first.AgentPlusPlugin.CPUPercent
			r.CPURatio = &v
		}
		if first.AgentPlusPlugin.RSSMiB > 0 {
			v := last.AgentPlusPlugin.RSSMiB / first.AgentPlusPlugin.RSSMiB
			r.RSSRatio = &v
		}
	}
	return r, nil
}

// gateway is one agent with its modem.
type gateway struct {
	id           string
	modem, agent *exec.Cmd
	modemDone    chan struct{}
	agentDone    chan struct{}
	pluginPID    int
}

// procs tracks every process of a step so one cleanup stops them all.
type procs struct {
	mu       sync.Mutex
	gateways []*gateway
}

func runStep(ctx context.Context, o Options, n int) (step Step, err error) {
	root, err := os.MkdirTemp("", "cellgate-fleet-")
	if err != nil {
		return step, err
	}
	defer os.RemoveAll(root)
	pki, err := devpki.New(devpki.P256)
	if err != nil {
		return step, err
	}
	if err := pki.WriteFiles(root); err != nil {
		return step, err
	}
	broker, err := StartMosquitto(ctx, root)
	if err != nil {
		return step, err
	}
	defer broker.Stop()
	sub, err := subscribe(ctx, pki.ClientTLS(), broker.Addr)
	if err != nil {
		return step, err
	}
	defer sub.close()
	ps := &procs{}
	defer ps.stopAll(o.Log)
	o.Log.Info("starting gateways", "agents", n, "broker", broker.Addr)
	for i := range n {
		g, err := startGateway(ctx, o, root, broker.Addr, i)
		if g != nil {
			ps.add(g)
		}
		if err != nil {
			return step, err
		}
	}
	if err := waitDelivering(ctx, ps, sub, n); err != nil {
		return step, err
	}
	o.Log.Info("every agent delivers; measuring", "agents", n, "for", o.Duration)
	return measure(ctx, o, ps, sub, broker.PID(), n)
}

func (ps *procs) add(g *gateway) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	ps.gateways = append(ps.gateways, g)
}

// stopAll ends every agent (SIGTERM: it stops its plugin), then every
// modem, each by its PID, killing what does not stop in 15 s.
func (ps *procs) stopAll(log *slog.Logger) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for _, g := range ps.gateways {
		if g.agent != nil {
			g.agent.Process.Signal(syscall.SIGTERM)
		}
	}
	for _, g := range ps.gateways {
		if g.agent != nil {
			stopWait(g.agent, g.agentDone)
		}
		g.modem.Process.Signal(syscall.SIGTERM)
	}
	for _, g := range ps.gateways {
		stopWait(g.modem, g.modemDone)
	}
	log.Info("stopped", "gateways", len(ps.gateways))
}

func stopWait(cmd *exec.Cmd, done <-chan struct{}) {
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		cmd.Process.Kill()
		<-done
	}
}

// start runs cmd with its output in logPath; the process dies with this
// one (Pdeathsig) should the harness itself be killed.
func start(cmd *exec.Cmd, logPath string) (chan struct{}, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", cmd.Path, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); f.Close(); close(done) }()
	return done, nil
}

func startGateway(ctx context.Context, o Options, root, broker string, i int) (*gateway, error) {
	g := &gateway{id: fmt.Sprintf("fleet-%03d", i)}
	dir := filepath.Join(root, g.id)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	link := filepath.Join(dir, "ttyUSB2")
	g.modem = exec.Command(filepath.Join(o.Bin, "modemsim"), "--model", "sim7600", "--baud", "115200", "--link", link,
		"--state-dir", filepath.Join(dir, "flash"), "--log-level", "warn")
	var err error
	if g.modemDone, err = start(g.modem, filepath.Join(dir, "modemsim.log")); err != nil {
		return nil, err
	}
	if err := waitPath(ctx, link, 30*time.Second, g.modemDone); err != nil {
		return g, fmt.Errorf("%s modem: %w", g.id, err)
	}
	cfg := fmt.Sprintf(`device_id: %s
modem: {model: sim7600, port: %q, baud: 115200}
plugins: {dir: %q}
tls: {mode: modem, ca: %q, cert: %q, key: %q}
inputs: {http: {listen: "127.0.0.1:0"}, demo: {rate: %g}}
status: {listen: ""}
spool: {dir: %q}
uplink:
  mqtt: {broker: "mqtts://%s", topic: "cellgate/{device_id}/readings", qos: 1}
log: {level: warn}
`, g.id, link, o.Bin, filepath.Join(root, "ca.pem"), filepath.Join(root, "client.pem"), filepath.Join(root, "client.key"),
		o.Rate, filepath.Join(dir, "spool"), broker)
	cfgPath := filepath.Join(dir, "cellgate.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return g, err
	}
	g.agent = exec.Command(filepath.Join(o.Bin, "cellgate"), "run", "--config", cfgPath)
	if g.agentDone, err = start(g.agent, filepath.Join(dir, "cellgate.log")); err != nil {
		g.agent = nil
		return g, err
	}
	return g, nil
}

func waitPath(ctx context.Context, path string, within time.Duration, exited <-chan struct{}) error {
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	for {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("exited before %s appeared", path)
		case <-deadline.C:
			return fmt.Errorf("no %s after %s", path, within)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// waitDelivering waits until every agent's topic carried a message and
// finds each agent's plugin.
func waitDelivering(ctx context.Context, ps *procs, sub *subscriber, n int) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute+time.Duration(n)*2*time.Second)
	defer cancel()
	for sub.devices() < n {
		for _, g := range ps.gateways {
			select {
			case <-g.agentDone:
				return fmt.Errorf("%s: the agent exited (its log is cellgate.log in its directory)", g.id)
			default:
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d of %d agents delivered: %w", sub.devices(), n, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
	for _, g := range ps.gateways {
		if g.pluginPID = childNamed(g.agent.Process.Pid, "cellgate-plugin"); g.pluginPID == 0 {
			return fmt.Errorf("%s: no plugin process under agent %d", g.id, g.agent.Process.Pid)
		}
	}
	return nil
}

// subscriber counts the messages the broker delivers on cellgate/+/readings.
type subscriber struct {
	c        *paho.Client
	msgs     atomic.Int64
	mu       sync.Mutex
	seenFrom map[string]bool
}

func subscribe(ctx context.Context, cfg *tls.Config, addr string) (*subscriber, error) {
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	conn, err := (&tls.Dialer{Config: cfg}).DialContext(cctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("subscriber: %w", err)
	}
	s := &subscriber{seenFrom: map[string]bool{}}
	// packets.NewThreadSafeConn: paho's lock around each packet's Writes,
	// so the PUBACKs and PINGREQs it sends from other goroutines do not
	// land inside another packet.
	s.c = paho.NewClient(paho.ClientConfig{Conn: packets.NewThreadSafeConn(conn), OnPublishReceived: []func(paho.PublishReceived) (bool, error){
		func(pr paho.PublishReceived) (bool, error) {
			s.msgs.Add(1)
			s.mu.Lock()
			s.seenFrom[pr.Packet.Topic] = true
			s.mu.Unlock()
			return true, nil
		}}})
	if _, err := s.c.Connect(cctx, &paho.Connect{ClientID: "fleet-subscriber", CleanStart: true, KeepAlive: 60}); err != nil {
		conn.Close()
		return nil, fmt.Errorf("subscriber connect: %w", err)
	}
	if _, err := s.c.Subscribe(cctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "cellgate/+/readings", QoS: 1}}}); err != nil {
		s.close()
		return nil, fmt.Errorf("subscribe: %w", err)
	}
	return s, nil
}

func (s *subscriber) devices() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.seenFrom)
}

func (s *subscriber) close() {
	s.c.Disconnect(&paho.Disconnect{ReasonCode: 0})
}

var errStopped = errors.New("stopped before the measurement ended")

// measure samples every process over o.Duration and returns per-agent
// means.
func measure(ctx context.Context, o Options, ps *procs, sub *subscriber, brokerPID, n int) (Step, error) {
	type pids struct{ agent, plugin, modem int }
	all := make([]pids, 0, n)
	for _, g := range ps.gateways {
		all = append(all, pids{g.agent.Process.Pid, g.pluginPID, g.modem.Process.Pid})
	}
	before := map[int]procSample{}
	read := func(pid int) (procSample, error) { return sample(pid) }
	for _, p := range append(flatten(all, func(p pids) []int { return []int{p.agent, p.plugin, p.modem} }), brokerPID) {
		s, err := read(p)
		if err != nil {
			return Step{}, err
		}
		before[p] = s
	}
	msgs0, t0 := sub.msgs.Load(), time.Now()
	select {
	case <-ctx.Done():
		return Step{}, errStopped
	case <-time.After(o.Duration):
	}
	secs := time.Since(t0).Seconds()
	role := func(pid int) (Role, error) {
		s, err := read(pid)
		if err != nil {
			return Role{}, err
		}
		return Role{CPUPercent: float64(s.cpuTicks-before[pid].cpuTicks) / clockTicks / secs * 100, RSSMiB: s.rssMiB}, nil
	}
	st := Step{Agents: n, Seconds: secs, BrokerMsgsPerS: float64(sub.msgs.Load()-msgs0) / secs, ReadingsPerS: o.Rate * float64(n)}
	for _, p := range all {
		for _, x := range []struct {
			pid int
			to  *Role
		}{{p.agent, &st.Agent}, {p.plugin, &st.Plugin}, {p.modem, &st.Modemsim}} {
			r, err := role(x.pid)
			if err != nil {
				return Step{}, err
			}
			x.to.CPUPercent += r.CPUPercent / float64(n)
			x.to.RSSMiB += r.RSSMiB / float64(n)
		}
	}
	st.AgentPlusPlugin = Role{CPUPercent: st.Agent.CPUPercent + st.Plugin.CPUPercent, RSSMiB: st.Agent.RSSMiB + st.Plugin.RSSMiB}
	var err error
	st.Broker, err = role(brokerPID)
	return st, err
}

func flatten[T any](xs []T, f func(T) []int) []int {
	var out []int
	for _, x := range xs {
		out = append(out, f(x)...)
	}
	return out
}

// Table renders the report for a terminal.
func (r Report) Table(w io.Writer) {
	fmt.Fprintf(w, "%7s %9s %9s %9s %9s %9s %9s %11s %11s %12s\n", "agents", "agent%", "agentMiB", "plugin%", "pluginMiB", "modem%", "modemMiB", "broker%", "brokerMiB", "broker msg/s")
	for _, s := range r.Steps {
		fmt.Fprintf(w, "%7d %9.2f %9.1f %9.2f %9.1f %9.2f %9.1f %11.2f %11.1f %12.1f\n", s.Agents, s.Agent.CPUPercent, s.Agent.RSSMiB,
			s.Plugin.CPUPercent, s.Plugin.RSSMiB, s.Modemsim.CPUPercent, s.Modemsim.RSSMiB, s.Broker.CPUPercent, s.Broker.RSSMiB, s.BrokerMsgsPerS)
	}
	if r.CPURatio != nil && r.RSSRatio != nil {
		fmt.Fprintf(w, "per agent (agent + plugin), largest fleet / smallest: CPU %.2fx, RSS %.2fx (flat is 1.00x)\n", *r.CPURatio, *r.RSSRatio)
	}
}
