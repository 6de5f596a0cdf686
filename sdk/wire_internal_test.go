package sdk

import (
	"strings"
	"testing"

	pb "github.com/cellgate/cellgate/sdk/proto"
)

// TestNetKindNumbersMatchTheWire: NetKind crosses the wire as its number,
// so each kind must have the number of the proto value of the same name.
func TestNetKindNumbersMatchTheWire(t *testing.T) {
	for k := NetOther; k.known(); k++ {
		want := "NET_KIND_" + strings.ToUpper(k.String())
		if k == NetOther {
			want = "NET_KIND_UNSPECIFIED"
		}
		if got := pb.NetKind(k).String(); got != want {
			t.Errorf("NetKind %s is number %d, which the proto calls %s; want %s", k, int(k), got, want)
		}
	}
	if n := len(pb.NetKind_name); n != len(netKindNames) {
		t.Errorf("the proto has %d NetKind values, the sdk %d", n, len(netKindNames))
	}
	if got := netKindFromPB(pb.NetKind(len(netKindNames) + 5)); got != NetOther {
		t.Errorf("an unknown wire kind arrives as %s, want other", got)
	}
}

func TestContractVersions(t *testing.T) {
	for _, bad := range []string{"", "1", "1.", "x.0", "0.3", "1.-1", "1.1000", "1.0.2"} {
		if _, err := parseVersion(bad); err == nil {
			t.Errorf("parseVersion(%q) accepted it", bad)
		}
	}
	v := mustParseVersion("1.3")
	if got := v.protocols(); len(got) != 4 || got[0] != 1000 || got[3] != 1003 {
		t.Errorf("1.3 offers protocols %v, want 1000 to 1003", got)
	}
	if back, ok := versionOfProtocol(v.protocol()); !ok || back != v {
		t.Errorf("protocol %d reads back as %v, %v", v.protocol(), back, ok)
	}
	if _, ok := versionOfProtocol(1); ok {
		t.Error("protocol 1, from before versioned contracts, read as a contract version")
	}
	if mustParseVersion(ContractVersion).protocol() != int(Handshake.ProtocolVersion) {
		t.Errorf("Handshake.ProtocolVersion %d is not ContractVersion %s", Handshake.ProtocolVersion, ContractVersion)
	}
}
