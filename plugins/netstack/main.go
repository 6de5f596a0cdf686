// Command cellgate-plugin-netstack is the cellgate modem plugin for the
// gateway's own IP stack (Ethernet, Wi-Fi, or a modem that ModemManager
// runs in QMI/MBIM mode): no AT, no serial port. The agent starts it; run
// by hand it explains that and exits.
package main

import "github.com/cellgate/cellgate/plugins/netstack/internal/ipstack"

func main() { ipstack.Serve() }
