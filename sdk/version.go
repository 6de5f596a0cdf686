package sdk

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// ContractVersion is the version of the plugin contract this sdk implements:
// the SecureTransport interface and its types, the typed errors, and the
// wire (sdk/proto). It reads "major.minor".
//
// A minor release only adds: new optional fields, error and event kinds,
// options, RPCs. A plugin built against 1.m works with every 1.n agent,
// older or newer; each side treats what the other does not send as absent
// and maps a kind it does not know to a generic one (see README.md). A new
// major version is a break: the agent refuses a plugin of another major
// version with a *ContractError before any call.
//
// 1.1 added the optional Status RPC (StatusReporter): a plugin that does
// not implement it answers UNIMPLEMENTED, and the host does not send it to
// a plugin that negotiated 1.0.
//
// 1.2 added ModemConfig.NoNetwork (Open without registration or packet
// data, for the certificate store); a plugin of 1.1 or older ignores it.
const ContractVersion = "1.2"

// contract is the contract this process speaks: ContractVersion, replaced
// only by the sdk's own tests of the negotiation.
var contract = mustParseVersion(ContractVersion)

// protocolMajorStep spaces the major versions in the go-plugin protocol
// number: contract m.n is protocol m*protocolMajorStep + n.
const protocolMajorStep = 1000

// version is a parsed contract version.
type version struct{ major, minor int }

func parseVersion(s string) (version, error) {
	maj, min, ok := strings.Cut(s, ".")
	a, aerr := strconv.Atoi(maj)
	b, berr := strconv.Atoi(min)
	if !ok || aerr != nil || berr != nil || a < 1 || b < 0 || b >= protocolMajorStep {
		return version{}, fmt.Errorf("contract version %q: want major.minor, e.g. 1.0", s)
	}
	return version{a, b}, nil
}

func mustParseVersion(s string) version {
	v, err := parseVersion(s)
	if err != nil {
		panic(err)
	}
	return v
}

func (v version) String() string { return fmt.Sprintf("%d.%d", v.major, v.minor) }

// protocol is v as a go-plugin protocol version.
func (v version) protocol() int { return v.major*protocolMajorStep + v.minor }

// protocols lists the go-plugin protocol versions a side speaking v offers:
// every minor version of its major up to its own, since minors only add.
// go-plugin picks the highest one both sides offer.
func (v version) protocols() []int {
	out := make([]int, 0, v.minor+1)
	for m := 0; m <= v.minor; m++ {
		out = append(out, version{v.major, m}.protocol())
	}
	return out
}

// versionOfProtocol is the contract version a go-plugin protocol version
// stands for; ok is false for the unversioned protocols from before
// contract 1.0.
func versionOfProtocol(p int) (version, bool) {
	if p < protocolMajorStep {
		return version{}, false
	}
	return version{p / protocolMajorStep, p % protocolMajorStep}, true
}

// ContractError is a plugin that speaks another major version of the
// contract than this agent. Launch refuses it before any call, since
// nothing it says can be understood; rebuilding the plugin against an sdk of
// the agent's major version, or running an agent of the plugin's, fixes it.
type ContractError struct {
	// Path is the plugin binary.
	Path string
	// Plugin is the contract version the plugin offered, e.g. "2.0"; empty
	// when it predates versioned contracts (Protocol then says what it
	// spoke).
	Plugin string
	// Protocol is the go-plugin protocol version the plugin announced.
	Protocol int
	// Agent is the contract version this side speaks (ContractVersion).
	Agent string
}

// Error reads like "plugin cellgate-plugin-x speaks contract 2.0, this
// agent speaks 1.x: rebuild the plugin against a 1.x sdk, or run an agent
// that speaks contract 2.x".
func (e *ContractError) Error() string {
	name := filepath.Base(e.Path)
	agentMajor, _, _ := strings.Cut(e.Agent, ".")
	if e.Plugin == "" {
		return fmt.Sprintf("plugin %s predates versioned contracts (it speaks protocol %d), this agent speaks %s.x: rebuild the plugin against a %s.x sdk",
			name, e.Protocol, agentMajor, agentMajor)
	}
	pluginMajor, _, _ := strings.Cut(e.Plugin, ".")
	return fmt.Sprintf("plugin %s speaks contract %s, this agent speaks %s.x: rebuild the plugin against a %s.x sdk, or run an agent that speaks contract %s.x",
		name, e.Plugin, agentMajor, agentMajor, pluginMajor)
}

// incompatibleRE matches go-plugin's refusal of a protocol version the host
// did not offer; it is the only place the plugin's version is told when the
// major versions differ.
var incompatibleRE = regexp.MustCompile(`(?i)incompatible API version with plugin\. Plugin version: (\d+)`)

// contractMismatch returns the *ContractError that err, a failed go-plugin
// start of the binary at path, stands for, or nil when it is something else.
func contractMismatch(path string, err error) *ContractError {
	m := incompatibleRE.FindStringSubmatch(err.Error())
	if m == nil {
		return nil
	}
	p, convErr := strconv.Atoi(m[1])
	if convErr != nil {
		return nil
	}
	ce := &ContractError{Path: path, Protocol: p, Agent: contract.String()}
	if v, ok := versionOfProtocol(p); ok {
		ce.Plugin = v.String()
	}
	return ce
}
