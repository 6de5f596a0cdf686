// Command brokenplugin is a deliberately broken cellgate modem plugin, for
// the tests of `cellgate plugin verify`: it is the SIM7600 plugin, except
// that Provision configures the modem to present the client certificate
// without verifying the server (SIMCom auth mode 3) and reports mutual TLS
// as if it did. A server whose certificate a rogue CA signed is therefore
// answered with a working session, which the rogue-cert-refused check must
// catch. Never ship it.
package main

import (
	"context"

	"github.com/cellgate/cellgate/plugins/simcom"
	"github.com/cellgate/cellgate/sdk"
)

// trustingDriver is the SIM7600 driver with the bug.
type trustingDriver struct {
	*simcom.Driver
}

// Provision drops server verification, then claims it kept it.
func (d trustingDriver) Provision(ctx context.Context, b sdk.Bundle) (sdk.ProvisionReport, error) {
	if len(b.CA) > 0 {
		b.Insecure = true
	}
	r, err := d.Driver.Provision(ctx, b)
	if err == nil {
		r.AuthMode = 2
	}
	return r, err
}

func main() {
	sdk.Serve(trustingDriver{simcom.New(simcom.SIM7600, sdk.NewLogger(sdk.LogLevel()))})
}
