package modemsim

import (
	"fmt"
	"io"
	"maps"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Counters is a snapshot of what crossed the emulated module's two
// interfaces. Serial counts are bytes on the pty each way (AT framing,
// echo and payload alike); Net counts are bytes on the TCP sockets the
// sessions opened, each way, i.e. what the cellular network would carry,
// TLS records and handshakes included; CCH payload counts are the
// application bytes the host handed to a session and received from one
// (SIMCom AT+CCHSEND and +CCHRECV; Quectel AT+QSSLSEND/AT+QISEND and
// AT+QSSLRECV/AT+QIRD or pushed +QSSLURC/+QIURC "recv" frames), so
// NetTxBytes-CCHPayloadTxBytes is the TLS overhead. CertUploads counts
// files stored in the module's certificate or file store, whatever the
// dialect (AT+CCERTDOWN, AT+QFUPL).
type Counters struct {
	SerialHostToModemBytes int64            `json:"serial_host_to_modem_bytes"`
	SerialModemToHostBytes int64            `json:"serial_modem_to_host_bytes"`
	NetTxBytes             int64            `json:"net_tx_bytes"`
	NetRxBytes             int64            `json:"net_rx_bytes"`
	CCHPayloadTxBytes      int64            `json:"cch_payload_tx_bytes"`
	CCHPayloadRxBytes      int64            `json:"cch_payload_rx_bytes"`
	SessionsOpened         int64            `json:"sessions_opened"`
	CertUploads            int64            `json:"cert_uploads"`
	Reboots                int64            `json:"reboots"`
	Commands               map[string]int64 `json:"commands"`
}

// counters is the live, goroutine-safe form of Counters.
type counters struct {
	serialIn, serialOut atomic.Int64
	netTx, netRx        atomic.Int64
	payloadTx           atomic.Int64
	payloadRx           atomic.Int64
	sessionsOpened      atomic.Int64
	certUploads         atomic.Int64
	reboots             atomic.Int64
	mu                  sync.Mutex
	commands            map[string]int64
}

// maxCommandNames bounds the command map so line noise cannot grow it.
const maxCommandNames = 256

func (c *counters) command(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.commands == nil {
		c.commands = make(map[string]int64)
	}
	if _, ok := c.commands[name]; !ok && len(c.commands) >= maxCommandNames {
		name = "unknown"
	}
	c.commands[name]++
}

func (c *counters) snapshot() Counters {
	c.mu.Lock()
	cmds := maps.Clone(c.commands)
	c.mu.Unlock()
	if cmds == nil {
		cmds = map[string]int64{}
	}
	return Counters{
		SerialHostToModemBytes: c.serialIn.Load(),
		SerialModemToHostBytes: c.serialOut.Load(),
		NetTxBytes:             c.netTx.Load(),
		NetRxBytes:             c.netRx.Load(),
		CCHPayloadTxBytes:      c.payloadTx.Load(),
		CCHPayloadRxBytes:      c.payloadRx.Load(),
		SessionsOpened:         c.sessionsOpened.Load(),
		CertUploads:            c.certUploads.Load(),
		Reboots:                c.reboots.Load(),
		Commands:               cmds,
	}
}

// tracer writes the timestamped transcript of both directions. Each record
// is one line: an RFC 3339 UTC timestamp with microseconds, the direction
// ("host>modem" or "modem>host") and the bytes as a Go-quoted string, so
// binary payloads and line endings stay visible and unambiguous.
type tracer struct {
	mu sync.Mutex
	w  io.Writer
}

func (t *tracer) record(dir string, b []byte) {
	if t == nil || t.w == nil || len(b) == 0 {
		return
	}
	line := fmt.Sprintf("%s %s %s\n", time.Now().UTC().Format("2006-01-02T15:04:05.000000Z"), dir, strconv.Quote(string(b)))
	t.mu.Lock()
	defer t.mu.Unlock()
	// A failing trace sink must not take the modem down; the transcript is
	// diagnostic only.
	_, _ = io.WriteString(t.w, line)
}
