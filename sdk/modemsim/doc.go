// Package modemsim is a virtual SIMCom SIM7600/SIM7800 or Quectel BG96
// LTE module on a Linux pseudo-terminal, for testing drivers without
// hardware.
//
// Start creates the pty (opened by clients exactly like /dev/ttyUSB2, e.g.
// with go.bug.st/serial) and answers the module's AT dialect as written in
// the project's SIMCom reference (shared/reference/simcom-at.md): the
// basic and 3GPP commands a driver needs to bring a module up, certificate
// storage (AT+CCERTDOWN/LIST/DELE, kept in a state directory like flash),
// SSL contexts (AT+CSSLCFG, every key, ranges enforced) and CCH sessions
// (AT+CCHSET … AT+CCHCLOSE, both receive modes and transparent mode).
// The "bg96" personality speaks Quectel's dialect instead, as written in
// the project's Quectel reference (shared/reference/quectel-ssl.md): UFS
// files (AT+QFUPL/QFLST/QFDEL), TCP/IP contexts (AT+QICSGP/QIACT), SSL
// contexts (AT+QSSLCFG) and sockets (AT+QSSLOPEN … AT+QSSLCLOSE, and plain
// TCP with AT+QIOPEN … AT+QICLOSE for TLS by the host). Both dialects
// run on the same engine: pty, pacing, faults, counters, trace, and the
// sessions below.
//
// Sessions are real: they resolve, dial TCP and, for client type 2, run a
// crypto/tls handshake configured from the SSL context the way the
// module's embedded stack behaves (no TLS 1.3, SNI only when enabled,
// the module's own clock for validity checks). Bytes on the serial line
// and on the sockets are counted (Counters), the line is paced to a baud
// rate, and faults can be injected from Go (Modem.Fault) or through a
// control socket.
//
// The emulator shares no code with the project's AT client (sdk/at) or
// its drivers, so a misreading of the manual cannot hide on both sides.
// Where the reference is UNSURE, the manual's (M3) form is used; every
// such pick, what is emulated and what is not, the control protocol and
// the command line are listed in README.md next to this file.
//
// Concurrency: one goroutine (the core) owns all module state; the pty
// reader and writer, session goroutines, timers and the control socket
// talk to it through channels. Every Modem method is safe for concurrent
// use. Close stops all of them and waits.
package modemsim
