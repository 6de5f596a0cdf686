// Command cellgate-plugin-sim7800 is the cellgate modem plugin for SIMCom
// SIM7800-series modules. The agent starts it; run by hand it explains
// that and exits.
package main

import "github.com/cellgate/cellgate/plugins/simcom"

func main() { simcom.Serve(simcom.SIM7800) }
