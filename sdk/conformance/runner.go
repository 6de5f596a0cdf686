package conformance

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/cellgate/cellgate/sdk"
	"github.com/cellgate/cellgate/sdk/modemsim"
)

// Config says which plugin to certify, against which modem and servers.
type Config struct {
	// Plugin is the plugin executable.
	Plugin string
	// Model is the model the plugin drives, as sdk.ModemConfig.Model
	// ("sim7600", "bg96", "netstack").
	Model string
	// Emulator is the sdk/modemsim personality to put behind the plugin,
	// a fresh one for each check; Port is a real serial port instead.
	// With neither, the plugin drives no modem (netstack) and reaches the
	// servers itself. NewModem, when set, overrides both.
	Emulator string
	Port     string
	NewModem func() (Modem, error)
	// Baud is the line rate: the emulator's pacing (0: unthrottled) or
	// the real port's rate (0: the plugin's default).
	Baud int
	// APN and Options go to every Open.
	APN     string
	Options map[string]string
	// Server, when set, is a reachable remote echo server to use instead
	// of the local ones.
	Server *RemoteServer
	// CheckTimeout bounds each check; 0 means 3 minutes (10 with a real
	// port).
	CheckTimeout time.Duration
	// Logger receives the plugin's logs; nil discards them.
	Logger *slog.Logger
	// Env is added to the plugin's environment.
	Env []string
}

// RemoteServer is an echo server the modem under test can reach, such as
// `cellgate plugin echo-server`: it requires a client certificate signed by
// the CA that signed its own, and honours CloseRequest.
type RemoteServer struct {
	// Addr is the server's host:port as the modem dials it.
	Addr string
	// CA is the PEM of the CA the modem must trust; Cert and Key the
	// client identity the server accepts.
	CA, Cert, Key []byte
	// RogueAddr, when set, is a server whose certificate another CA
	// signed; without it the rogue-certificate check is not applicable.
	RogueAddr string
}

func (c *Config) validate() error {
	switch {
	case c.Plugin == "":
		return errors.New("conformance: Config.Plugin is required")
	case c.Model == "":
		return errors.New("conformance: Config.Model is required")
	case c.Emulator != "" && c.Port != "":
		return errors.New("conformance: Config.Emulator and Config.Port exclude each other")
	case c.Port != "" && c.Server == nil:
		// The local servers listen on the host's loopback, which a modem
		// on a real network cannot reach.
		return errors.New("conformance: a real port needs Config.Server, an echo server the modem can reach")
	}
	if err := sdk.CheckModelName(c.Model); err != nil {
		return fmt.Errorf("conformance: %w", err)
	}
	if s := c.Server; s != nil {
		if _, _, err := splitAddr(s.Addr); err != nil {
			return fmt.Errorf("conformance: server: %w", err)
		}
		if len(s.CA) == 0 || len(s.Cert) == 0 || len(s.Key) == 0 {
			return errors.New("conformance: a remote server needs its CA and the client certificate and key it accepts")
		}
		if s.RogueAddr != "" {
			if _, _, err := splitAddr(s.RogueAddr); err != nil {
				return fmt.Errorf("conformance: rogue server: %w", err)
			}
		}
	}
	if c.Emulator != "" && !isEmulatorModel(c.Emulator) {
		return fmt.Errorf("conformance: no emulator %q (have %v)", c.Emulator, modemsim.Models())
	}
	return nil
}

func isEmulatorModel(m string) bool {
	for _, have := range modemsim.Models() {
		if have == m {
			return true
		}
	}
	return false
}

func splitAddr(addr string) (string, int, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("%q: want HOST:PORT", addr)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 {
		return "", 0, fmt.Errorf("%q: port %q is not 1-65535", addr, port)
	}
	return host, p, nil
}

// hasModem says whether the plugin under test drives a modem.
func (c *Config) hasModem() bool { return c.Emulator != "" || c.Port != "" || c.NewModem != nil }

func (c *Config) checkTimeout() time.Duration {
	switch {
	case c.CheckTimeout > 0:
		return c.CheckTimeout
	case c.Port != "":
		return 10 * time.Minute
	}
	return 3 * time.Minute
}

// newModem starts the modem under test of one check; nil for a plugin
// that drives none.
func (c *Config) newModem() (Modem, error) {
	switch {
	case c.NewModem != nil:
		return c.NewModem()
	case c.Emulator != "":
		return StartEmulator(c.Emulator, c.Baud)
	case c.Port != "":
		return RealPort(c.Port), nil
	}
	return nil, nil
}

// Status is the outcome of one check.
type Status string

// The outcomes of a check.
const (
	Pass          Status = "pass"
	Fail          Status = "fail"
	NotApplicable Status = "n/a"
)

// Result is one check's outcome.
type Result struct {
	// Name is the check's name (see Checks).
	Name   string `json:"name"`
	Status Status `json:"status"`
	// Duration is how long the check ran, its setup included.
	Duration time.Duration `json:"-"`
	// Detail is the failure's reason, why the check did not apply, or
	// what a passing check saw.
	Detail string `json:"detail,omitempty"`
}

// Report is a certification run's outcome.
type Report struct {
	Plugin string `json:"plugin"`
	Model  string `json:"model"`
	// Modem says what the plugin drove: "emulator sim7600", "port
	// /dev/ttyUSB2", or "none".
	Modem string `json:"modem"`
	// Servers says which servers the checks reached.
	Servers string `json:"servers"`
	// ContractVersion is the one negotiated with the plugin, when it
	// launched at least once.
	ContractVersion string   `json:"contract_version,omitempty"`
	Passed          bool     `json:"passed"`
	Results         []Result `json:"checks"`
}

// Counts returns how many checks passed, failed and did not apply.
func (r *Report) Counts() (passed, failed, notApplicable int) {
	for _, res := range r.Results {
		switch res.Status {
		case Pass:
			passed++
		case Fail:
			failed++
		default:
			notApplicable++
		}
	}
	return passed, failed, notApplicable
}

// Run runs every check of Checks against cfg's plugin, one after the
// other, each with its own modem and plugin process, and returns the
// report; progress, when set, is called with each result as it is known.
// The error is a Config that cannot be run; a broken plugin is a report
// with failed checks. When ctx ends, the checks not run yet fail with its
// error.
func Run(ctx context.Context, cfg Config, progress func(Result)) (Report, error) {
	if err := cfg.validate(); err != nil {
		return Report{}, err
	}
	rep := Report{Plugin: cfg.Plugin, Model: cfg.Model, Modem: describeModem(&cfg), Servers: describeServers(&cfg), Passed: true}
	for _, c := range checks {
		res, version := runCheck(ctx, &cfg, c)
		if version != "" {
			rep.ContractVersion = version
		}
		if res.Status == Fail {
			rep.Passed = false
		}
		rep.Results = append(rep.Results, res)
		if progress != nil {
			progress(res)
		}
	}
	return rep, nil
}

// RunCheck runs the check called name against cfg's plugin. It is Run for
// one check, for a test that makes each check a subtest.
func RunCheck(ctx context.Context, cfg Config, name string) (Result, error) {
	if err := cfg.validate(); err != nil {
		return Result{}, err
	}
	for _, c := range checks {
		if c.name == name {
			res, _ := runCheck(ctx, &cfg, c)
			return res, nil
		}
	}
	return Result{}, fmt.Errorf("conformance: no check %q", name)
}

// CheckInfo names a check and says what it proves.
type CheckInfo struct {
	Name   string
	Proves string
}

// Checks lists the checks Run runs, in order.
func Checks() []CheckInfo {
	out := make([]CheckInfo, len(checks))
	for i, c := range checks {
		out[i] = CheckInfo{Name: c.name, Proves: c.proves}
	}
	return out
}

func describeModem(cfg *Config) string {
	switch {
	case cfg.NewModem != nil:
		return "custom"
	case cfg.Emulator != "":
		return "emulator " + cfg.Emulator
	case cfg.Port != "":
		return "port " + cfg.Port
	}
	return "none"
}

func describeServers(cfg *Config) string {
	if cfg.Server == nil {
		return "local, fresh PKI (good and rogue CA)"
	}
	if cfg.Server.RogueAddr == "" {
		return "remote " + cfg.Server.Addr
	}
	return "remote " + cfg.Server.Addr + ", rogue " + cfg.Server.RogueAddr
}

// runCheck runs one check with a fixture of its own and returns its result
// and the contract version negotiated, if the plugin launched.
func runCheck(ctx context.Context, cfg *Config, c check) (Result, string) {
	res := Result{Name: c.name}
	if c.applies != nil {
		if why := c.applies(cfg); why != "" {
			res.Status, res.Detail = NotApplicable, why
			return res, ""
		}
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, cfg.checkTimeout())
	defer cancel()
	f := &fixture{cfg: cfg}
	defer f.cleanup()
	var detail string
	err := f.setup(ctx)
	if err == nil {
		detail, err = c.run(ctx, f)
	}
	res.Duration = time.Since(start)
	var na notApplicable
	switch {
	case errors.As(err, &na):
		res.Status, res.Detail = NotApplicable, na.Error()
	case err != nil:
		res.Status, res.Detail = Fail, err.Error()
	default:
		res.Status, res.Detail = Pass, detail
	}
	return res, f.version
}
