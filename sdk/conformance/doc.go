// Package conformance certifies a cellgate modem plugin: it runs a plugin
// binary the way the agent does (sdk.Launch: checksum pinned, go-plugin
// gRPC, AutoMTLS) in front of a modem under test (an sdk/modemsim
// personality on a real pseudo-terminal, a modem on a real serial port, or
// no modem at all for a plugin over the gateway's own IP stack) and checks
// it against the SecureTransport contract, one named check at a time.
//
// Run returns a Report: each check passed, failed (with the reason) or was
// not applicable to the modem under test (with the reason: a real port
// cannot be rebooted on demand), with its duration. Report.WriteTable
// prints it for people, encoding/json for CI. `cellgate plugin verify` is
// the command form; sdk/plugintest is the Go-test form, one subtest per
// check. There is one copy of each check, here.
//
// The checks speak the contract's neutral terms only: error kinds rather
// than a vendor's codes, and what reached the modem counted by the
// modem's adapter (CommandCounter) rather than as one dialect's commands.
//
// Without Config.Server the checks reach TLS servers of their own on
// 127.0.0.1, made per check with a fresh PKI (a good CA whose client
// certificate the plugin provisions, and a rogue CA whose server the plugin
// must refuse). With Config.Server they reach a remote echo server (such as
// `cellgate plugin echo-server`), with its credentials; the checks that
// need a server only a local run can stage are then not applicable.
//
// This package does not import testing: a plugin author may run it from
// their own tooling.
package conformance
