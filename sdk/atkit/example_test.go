package atkit_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/cellgate/cellgate/sdk"
	"github.com/cellgate/cellgate/sdk/at"
	"github.com/cellgate/cellgate/sdk/atkit"
	"github.com/cellgate/cellgate/sdk/modemsim"
)

// A driver's Open, top-down: open the port, run the AT channel on it, get in
// sync with the modem, then run the bring-up as a script of declarative
// steps. Here the modem is the project's emulator in its Quectel BG96
// personality, on a real pseudo-terminal; on a gateway the port is a
// device such as /dev/ttyUSB2. Nothing in the bring-up is a vendor's own.
func Example() {
	modem, err := modemsim.Start(modemsim.Config{Model: "bg96", Baud: -1})
	if err != nil {
		log.Fatal(err)
	}
	defer modem.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	port, err := atkit.OpenPort(ctx, modem.Path(), atkit.PortConfig{Baud: 115200})
	if err != nil {
		log.Fatal(err) // a *PortBusyError names the process holding the port
	}
	ch := at.New(port) // the channel owns the port: ch.Close closes it
	defer ch.Close()

	if _, err := atkit.Sync(ctx, ch, atkit.SyncConfig{}); err != nil {
		log.Fatal(atkit.SDKError("open", err, ch, port.Name()))
	}
	var (
		model  string
		signal atkit.Signal
		reg    atkit.RegStat
	)
	bringUp := atkit.Script{Steps: []atkit.Step{
		{Op: "verbose errors", Cmd: "AT+CMEE=2"},
		{Op: "identify model", Cmd: "AT+CGMM", Check: func(r *at.Response) (bool, error) {
			model = atkit.FirstLine(r)
			return model != "", nil
		}},
		atkit.CheckSIM(30 * time.Second),
		atkit.WaitSignal(90*time.Second, &signal),
		atkit.WaitRegistered("AT+CEREG?", 90*time.Second, &reg),
	}}
	if err := bringUp.Run(ctx, ch); err != nil {
		// e.g. "open: check SIM: +CME ERROR: SIM not inserted", an
		// *sdk.ModemError that crosses the plugin boundary intact.
		log.Fatal(atkit.SDKError("open", err, ch, port.Name()))
	}
	fmt.Printf("%s: registered %s\n", model, reg)

	// Provision: the host-side checks and content names of a bundle.
	store := atkit.Store{Prefix: "cg", MaxFileBytes: 10240, Profiles: 6}
	_, err = store.Check(sdk.Bundle{CA: []byte("not a certificate")}, time.Now())
	fmt.Println(err)
	// Output:
	// BG96: registered home
	// bundle ca: no PEM block found (byte 0): not a PEM certificate
}
