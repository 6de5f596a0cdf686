// Package atkit is the driver kit for AT-command modems of any vendor: the
// parts every cellgate plugin that talks to a modem over a serial port
// needs, so that a new driver writes only its vendor's dialect.
//
// A driver built on the kit reads top-down:
//
//  1. [OpenPort] opens the serial device (go.bug.st/serial, 8N1), takes an
//     advisory flock on it so that two drivers never share one modem (a
//     second one waits, then fails with a [*PortBusyError] naming the holder
//     when the system says who it is), discards input the modem sent to a
//     previous owner, and bounds every write.
//  2. [at.New] runs the AT channel over that port (package sdk/at).
//  3. [Sync] probes until the modem answers (a modem that is booting, or that
//     a dead driver left waiting for payload bytes, is brought back) and
//     turns echo off.
//  4. The bring-up is a [Script]: declarative [Step]s, each a command, what
//     its answer must say ([Step.Check]), which failures mean "not yet"
//     ([Step.Retry]) and for how long to keep asking ([Step.Within]).
//     Ready-made steps cover the 3GPP parts every modem shares: [CheckSIM]
//     (SIM busy after boot is retried until a deadline), [WaitSignal] and
//     [WaitRegistered] (CREG/CGREG/CEREG, accepting home and roaming). A
//     step that fails is a [*StepError] naming the step, the command and
//     the modem's answer.
//  5. Provision checks a credential bundle on the host before anything
//     reaches the modem ([Store.Check], which builds on [sdk.CheckBundle]),
//     names the modem's files after their content ([Store.Name], built on
//     [sdk.ContentName]) and tells what to download and what a rotation
//     superseded ([Store.Plan], [Store.Superseded]).
//  6. [SDKError] turns whatever went wrong (a +CME ERROR, a step that got no
//     answer, a port that vanished) into the contract's typed errors
//     ([sdk.ModemError], [sdk.TimeoutError], [sdk.SerialError]) so they cross
//     the plugin boundary intact.
//
// Tests of a driver play the modem's side from a transcript with
// sdk/atkit/transcript, the one transcript format of the project.
//
// The kit knows no vendor's words: what "open a TLS session" is on a given
// modem stays in its driver. It imports the sdk, sdk/at, go.bug.st/serial
// and the standard library only.
package atkit
