package pluginhost

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/cellgate/cellgate/sdk"
)

// TestRetryPolicyReadsTheContractsTermsOnly: whether a failure stops the
// host, is retried in the same process or replaces it, and how it is
// logged, follow from the contract's error types and neutral kinds alone.
func TestRetryPolicyReadsTheContractsTermsOnly(t *testing.T) {
	wrap := func(err error) error { return fmt.Errorf("open modem on /dev/ttyUSB2 (plugin pid 7): %w", err) }
	for _, tc := range []struct {
		err      error
		terminal bool
		inPlace  bool
		kind     string
	}{
		{&sdk.ChecksumError{Path: "/p"}, true, false, "checksum"},
		{&sdk.ContractError{Path: "/p", Plugin: "2.0", Agent: "1.0"}, true, false, "contract"},
		{&sdk.ModelMismatchError{Want: "a", Got: "b"}, true, false, "model_mismatch"},
		{&sdk.OptionError{Key: "k", Reason: "r"}, true, false, "option"},
		{&sdk.BundleError{Field: "key", Reason: "r"}, true, false, "bundle"},
		{&sdk.ModemError{Op: "check SIM", Code: -1, Text: "SIM busy"}, false, true, "modem"},
		{&sdk.NetError{Op: "start", Session: -1, Kind: sdk.NetNoNetwork, Vendor: "acme", Code: 17}, false, true, "net_no_network"},
		{&sdk.NetError{Op: "open", Session: 0, Kind: sdk.NetHandshake}, false, true, "net_handshake"},
		{&sdk.SerialError{Op: "open", Port: "/dev/ttyUSB2", Err: "gone"}, false, true, "serial"},
		{&sdk.TimeoutError{Op: "registration"}, false, true, "modem_timeout"},
		{&sdk.PluginError{Op: "Open", Message: "m"}, false, true, "plugin"},
		{fmt.Errorf("x: %w", sdk.ErrPluginExited), false, false, "plugin_exited"},
		{context.DeadlineExceeded, false, false, "deadline"},
		{errors.New("something else"), false, false, "other"},
	} {
		err := wrap(tc.err)
		if got := terminal(err); got != tc.terminal {
			t.Errorf("terminal(%v) = %v, want %v", err, got, tc.terminal)
		}
		if !tc.terminal {
			if got := retryInPlace(err); got != tc.inPlace {
				t.Errorf("retryInPlace(%v) = %v, want %v", err, got, tc.inPlace)
			}
		}
		if got := errorKind(err); got != tc.kind {
			t.Errorf("errorKind(%v) = %q, want %q", err, got, tc.kind)
		}
	}
}
