// Package transcript is the one format for AT conversations written down
// as test data, its parser, and a player that acts out either side of a
// conversation against a real line (a pty, a pipe, a serial port).
//
// A transcript says, step by step, what the host (the driver) sends to the
// modem and what the modem sends back, byte for byte. The same parsed
// transcript can be played from either end:
//
//   - [Player.PlayModem] is the modem: it reads what the host under test
//     writes and checks it against the host's steps, and writes the modem's
//     steps. Host-side tests of a driver or of an AT channel use it.
//   - [Player.PlayHost] is the host: it writes the host's steps and reads
//     and checks what the modem under test answers. Tests of a modem
//     emulator use it.
//
// The package imports only the standard library and never calls into a
// testing framework: parse and play errors are returned, each naming the
// file and line of the step that failed.
//
// # Format
//
// A transcript is UTF-8 text, one step per line. The first word of a line
// is its directive; one space separates it from its argument.
//
//	# a comment                     a line whose first non-blank character is '#'
//	                                (blank lines are ignored too)
//	> AT+CSQ                        host→modem: the command line "AT+CSQ\r"
//	>> "hello\x00"                  host→modem: exactly these bytes, e.g. a payload after a prompt
//	< +CSQ: 20,99                   modem→host: the line "+CSQ: 20,99\r\n"
//	<                               modem→host: an empty line, "\r\n"
//	<< "\r\n> "                     modem→host: exactly these bytes, e.g. a prompt or an echo
//	<data +CCHRECV: DATA,0,{len} "ab\r\n"
//	                                modem→host: a counted binary frame
//	~ 1500ms                        a pause before the next step
//	hangup                          the side being played closes the line
//	end                             the transcript is over; the other side must stay quiet
//	include bringup.txt             the steps of another transcript go here
//	@result                         a harness action (see below)
//
// Text lines ("> text", "< text") carry everything after the separating
// space, minus trailing spaces and tabs; a line whose bytes need trailing
// blanks, a bare CR or control characters is written in the quoted form.
// The quoted forms (">>", "<<" and the payload of "<data") take one Go
// string literal ("a\r\n\x00" or a `raw string`), so any byte can be
// written. A modem's usual response "\r\nOK\r\n" is therefore the two steps
// "<" and "< OK", and the echo "AT\r" of a modem with ATE1 is << "AT\r".
//
// Binary payloads are counted, never scanned. "<data <header> <payload>"
// sends CR LF, the header with {len} replaced by the payload's length in
// bytes, CR LF, then the payload raw: the frame a modem sends after a
// length-announcing URC such as SIMCom's "+CCHRECV: DATA,<id>,<len>" or
// Quectel's "+QIURC: \"recv\",<id>,<len>". The header must contain {len}
// exactly once; the payload is the line's last token, a Go string literal.
//
// The wire directives ">", ">>", "<", "<<" and "<data" take an optional
// repeat count written straight after the directive: "<data*200 ..." sends
// the frame 200 times in a row, ">*3 AT" expects the command three times.
//
// "~ <duration>" (time.ParseDuration syntax, greater than zero) is the
// player's own pace, part of the conversation: a modem that answers late, a
// boot that takes a while. It is not a way to wait for the other side;
// reads already wait for as long as the context allows.
//
// "hangup" closes the line from the side being played (the line must be an
// io.Closer); the other side then reads EOF. Only comments, pauses and
// actions may follow it.
//
// "end" says the conversation is over: the player listens for
// [Player.Quiet] and fails if the other side sends anything in that window.
// A closed line counts as quiet. Only comments may follow it. A transcript
// without "end" simply stops; what the other side sends after it is not
// checked.
//
// "include <file>" inlines the steps of another transcript, named relative
// to the including file, so cases can share a bring-up. Steps keep the
// position of the file they were written in. An include cycle is an error.
//
// # Variables
//
// ${NAME} is replaced by the value of NAME from the map given to [Parse]
// before a line is read, in every step but comments: ports of servers
// started by the test, for example, so that the transcript shows ${ECHO}
// rather than a number that changes on every run. A name that is not in the
// map is an error. To write a literal "${" use a quoted form and escape the
// dollar sign, "\x24{".
//
// # Harness actions
//
// A line "@<name> <arguments>" is an action of the test that plays the
// transcript, not a byte on the line: "@result" (wait for the command in
// flight and record its outcome), "@model sim7800" (start the emulator with
// that personality), "@handle +CCHEVENT:". The player hands each action, in
// order, to [Player.Action]; the package gives actions no meaning of its
// own. A transcript with actions fails to play without an Action hook, so
// an action is never skipped silently.
//
// # Positions and errors
//
// Every step records the file and line it came from ([Pos]). Parse and play
// errors are [*Error] values whose message starts with "file:line: ";
// a step that saw different bytes than the transcript wants wraps a
// [*MismatchError] with both.
package transcript
