// Package ipstack is the netstack plugin's SecureTransport: sessions over
// the gateway's own IP stack (whatever interface the routing table picks,
// or the one ModemConfig.Port names), TLS done in this process with
// crypto/tls and the provisioned bundle. It speaks no AT and opens no
// serial port. See ../../README.md for the model's behaviour.
package ipstack

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"

	"github.com/cellgate/cellgate/sdk"
)

// Model is the model name this plugin drives (modem.model: netstack).
const Model = "netstack"

// maxSessions bounds the sessions open at once, as a modem's session slots
// would; the agent needs two.
const maxSessions = 10

// Transport is the netstack SecureTransport. Every method is safe for
// concurrent use; the fields below mu are guarded by it.
type Transport struct {
	log *slog.Logger

	mu       sync.Mutex
	opened   bool
	local    net.Addr // source address from ModemConfig.Port; nil: the kernel picks
	port     string   // ModemConfig.Port, for Status
	store    store
	sessions map[int]*session
}

// New returns a Transport that logs to log.
func New(log *slog.Logger) *Transport {
	return &Transport{log: log, store: newStore(), sessions: map[int]*session{}}
}

// Open checks cfg and reports the host as the "modem": its host name as
// Manufacturer, the OS and kernel as Revision, the usable interfaces as
// Operator, and Registration "home" when one of them is up with a
// unicast address ("not registered" otherwise). cfg.Port may name an
// interface or a local IP address to dial from; a device path (starting
// with "/") or "" leaves the choice to the routing table. An interface or
// address that is not there is a *sdk.NetError of kind sdk.NetNoNetwork,
// which the agent retries: a USB modem's interface may appear later.
func (t *Transport) Open(ctx context.Context, cfg sdk.ModemConfig) (sdk.ModemInfo, error) {
	if err := ctx.Err(); err != nil {
		return sdk.ModemInfo{}, fmt.Errorf("open: %w", err)
	}
	if cfg.Model != "" && cfg.Model != Model {
		return sdk.ModemInfo{}, &sdk.ModelMismatchError{Want: cfg.Model, Got: Model}
	}
	if keys := slices.Sorted(maps.Keys(cfg.Options)); len(keys) > 0 {
		return sdk.ModemInfo{}, &sdk.OptionError{Key: keys[0], Reason: "unknown option: the netstack plugin reads no options"}
	}
	local, ifaces, err := localAddr(cfg.Port)
	if err != nil {
		return sdk.ModemInfo{}, err
	}
	host, _ := os.Hostname()
	info := sdk.ModemInfo{
		Model:        Model,
		Manufacturer: host,
		Revision:     revision(),
		SignalRSSI:   99,
		SignalBER:    99,
		Registration: "not registered",
		ClockSynced:  true,
	}
	if len(ifaces) > 0 {
		info.Registration = "home"
		info.Operator = strings.Join(ifaces, ", ")
	}
	t.mu.Lock()
	t.opened, t.local, t.port = true, local, cfg.Port
	t.mu.Unlock()
	source := "routing table"
	if local != nil {
		source = local.String()
	}
	t.log.Info("host network ready", "op", "open", "interfaces", info.Operator, "source", source)
	return info, nil
}

// Stop closes every session. The bundles stay, as a modem's certificate
// store would; Stop is idempotent.
func (t *Transport) Stop(ctx context.Context) error {
	t.mu.Lock()
	open := make([]*session, 0, len(t.sessions))
	for _, s := range t.sessions {
		if s != nil { // nil: a Dial in progress holds the id
			open = append(open, s)
		}
	}
	t.opened = false
	t.mu.Unlock()
	for _, s := range open {
		s.Close(ctx)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("stop: %w", err)
	}
	return nil
}

// localAddr reads port: "" or a device path means no source address; an
// IP address is used as is; anything else names an interface, whose first
// unicast address becomes the source. It also returns the names of the
// interfaces that are up, not loopback, and have a unicast address (just
// the named one when port names an interface).
func localAddr(port string) (net.Addr, []string, error) {
	noNet := func(text string) error {
		return &sdk.NetError{Op: "open", Session: -1, Kind: sdk.NetNoNetwork, Text: text}
	}
	all, err := net.Interfaces()
	if err != nil {
		return nil, nil, noNet("list interfaces: " + err.Error())
	}
	var usable []string
	for _, ifc := range all {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		if _, ok := unicast(ifc); ok {
			usable = append(usable, ifc.Name)
		}
	}
	switch {
	case port == "" || strings.HasPrefix(port, "/"):
		return nil, usable, nil
	case isIP(port):
		ip := net.ParseIP(port)
		l, err := net.Listen("tcp", net.JoinHostPort(port, "0"))
		if err != nil {
			return nil, nil, noNet(fmt.Sprintf("source address %s is not on this host: %v", port, err))
		}
		l.Close()
		return &net.TCPAddr{IP: ip}, usable, nil
	}
	ifc, err := net.InterfaceByName(port)
	if err != nil {
		return nil, nil, noNet(fmt.Sprintf("interface %s: %v", port, err))
	}
	if ifc.Flags&net.FlagUp == 0 {
		return nil, nil, noNet(fmt.Sprintf("interface %s is down", port))
	}
	ip, ok := unicast(*ifc)
	if !ok {
		return nil, nil, noNet(fmt.Sprintf("interface %s has no unicast address", port))
	}
	return &net.TCPAddr{IP: ip}, []string{ifc.Name}, nil
}

// unicast returns the interface's first global or private unicast
// address, IPv4 first.
func unicast(ifc net.Interface) (net.IP, bool) {
	addrs, err := ifc.Addrs()
	if err != nil {
		return nil, false
	}
	var v6 net.IP
	for _, a := range addrs {
		n, ok := a.(*net.IPNet)
		if !ok || !n.IP.IsGlobalUnicast() {
			continue
		}
		if n.IP.To4() != nil {
			return n.IP, true
		}
		if v6 == nil {
			v6 = n.IP
		}
	}
	return v6, v6 != nil
}

func isIP(s string) bool {
	_, err := netip.ParseAddr(s)
	return err == nil
}

// revision names the OS and, on Linux, the kernel release.
func revision() string {
	r := runtime.GOOS
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		r += " " + strings.TrimSpace(string(b))
	}
	return r
}
