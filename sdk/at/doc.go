// Package at is an AT command channel over an io.ReadWriter (a modem's
// serial port): it writes commands and collects their lines up to the final
// result, answers ">" prompts with raw payloads, routes unsolicited result
// codes (URCs) to handlers, reads length-announced binary URCs such as
// SIMCom's "+CCHRECV: DATA,<id>,<len>" raw, and survives timeouts. It knows
// AT framing only; what a command means belongs to the modem driver.
//
// # Goroutines
//
// A Channel runs three goroutines, each the only owner of its piece of
// work:
//
//   - The reader reads the port and owns all parsing state (the partial
//     line, the binary payload being filled, the prompt flag). It never runs
//     user code except the small matchers given to Expect and HandleBinary.
//   - The dispatcher runs URC handlers (and the WithUnsolicited handler) one
//     at a time, in arrival order, from a bounded queue. A slow handler does
//     not stall parsing until the queue is full; then the reader blocks
//     rather than drop data.
//   - The writer performs every write, so a caller whose context ends can
//     return even while a write is stuck on a full serial buffer. Close
//     unblocks it by closing the port.
//
// Callers share one command slot: one command is in flight at a time and
// the others queue, honouring their contexts while queued. The in-flight
// command, the waiters and the handler table are shared between the reader
// and callers under one mutex; handlers are never called with it held.
//
// # Framing
//
// Lines end at CR LF, bare CR or bare LF; blank lines are skipped, so the
// CR LF that precedes every response is harmless. A line longer than
// WithMaxLine is dropped up to the next CR or LF. With echo on (ATE1) the
// echo of the command in flight is dropped, also when it arrives in pieces.
// A '>' at the start of a line is the prompt when the command in flight
// waits for one (CommandPayload); one space after it is skipped. A command
// given WithPromptLine waits for a whole line instead ("CONNECT" for
// Quectel's AT+QFUPL), and '>' is then an ordinary character. After a
// binary header the announced number of bytes is read raw, whatever they
// contain (CR LF, "OK", '>', other headers, NUL), across any number of
// reads. Payload echo is not recognised: send ATE0 before payload commands.
// There is no data mode: "CONNECT" is accepted as a successful final
// result, and bytes after it are parsed as lines, unless it is the prompt
// of a CommandPayload given WithPromptLine("CONNECT"): then the payload is
// written after it and the command goes on to its final result.
//
// Final results are OK, CONNECT [<text>], ERROR, NO CARRIER, CONNECT FAIL,
// BUSY, NO ANSWER, NO DIALTONE, "+CME ERROR: <n|text>" and
// "+CMS ERROR: <n|text>". A command may declare more of its own, successes
// with WithFinalOK and failures with WithFinalError, for modems that end a
// command with something else: Quectel's AT+QSSLSEND ends with "SEND OK",
// "SEND FAIL" or ERROR, and no OK.
//
// # Routing
//
// Each complete line goes to the first of:
//
//  1. the echo of the command in flight: dropped;
//  2. the prompt line (WithPromptLine) of the command in flight while it
//     waits for it: the payload is written next;
//  3. a binary header (HandleBinary): its payload is read raw;
//  4. a final result while a command is in flight (a standard one, or one
//     the command declared with WithFinalOK or WithFinalError): completes
//     it;
//  5. a waiter (Expect), in registration order: consumes the line;
//  6. a prefix claimed by the in-flight command (WithResponsePrefix): an
//     intermediate line;
//  7. a URC handler (Handle), longest prefix first;
//  8. the command in flight: an intermediate line;
//  9. otherwise it is unsolicited: WithUnsolicited's handler, or a debug log.
//
// Prefix matching ignores spaces that follow ':' or ',' in both prefix and
// line ("+CCHRECV:DATA,0,3" matches "+CCHRECV: DATA,"); callers always get
// the raw line.
//
// # Timeouts and resynchronisation
//
// When a caller's context ends after its command may have reached the
// modem, the command is abandoned and the channel is marked out of sync:
// the modem will probably still answer, and that late answer must not be
// taken for the next command's. Three things then keep the channel honest:
//
//   - While idle, late lines are routed like any unsolicited line, and each
//     standard final result counts against the abandoned commands (a modem
//     answers in order, at most once per command). A late final that only
//     the abandoned command declared ("SEND OK") is an ordinary line then
//     and does not count, so the next command probes. When every abandoned command is
//     accounted for the channel is in sync again and the next command goes
//     out directly. Late echoes of abandoned commands are dropped.
//   - Otherwise, before the next command the channel sends a probe whose
//     answer carries an identifiable line: "AT+CMEE?" answers "+CMEE: <n>"
//     (or "AT+CSCS?" answering "+CSCS: ..." when AT+CMEE itself was
//     abandoned, so an old answer cannot pose as the new one). Every final
//     result before the probe's marker line is stale and discarded; the
//     first final after it ends the probe, and the channel is in sync.
//   - The probe is bounded by the next caller's context. If it times out it
//     is abandoned in turn, and the following command probes again with the
//     other probe. A modem that never answers thus costs each caller its
//     own timeout, never a wrong result.
//
// A caller whose context ends after a payload command was sent but before
// the '>' prompt arrived does not leave the modem waiting for payload
// bytes: the channel keeps the command slot, writes the payload itself when
// the prompt comes, and waits for the final result (each stage bounded by
// five seconds), so the next command is not swallowed as payload. Close
// waits for such an exchange (as long) before it closes the port. A modem
// left in that state by a previous owner of the port that died is
// recovered with Unstick.
//
// # Writes and contexts
//
// Every blocking call takes a context. Writes go through the writer
// goroutine, so a caller stops waiting when its context ends; the bytes
// being written are the channel's own copy, and the channel is marked out
// of sync because part of the command may have gone out. The port itself
// needs no write deadline; a write that never completes is ended by Close.
package at
