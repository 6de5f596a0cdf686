package bg96

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/cellgate/cellgate/sdk"
	"github.com/cellgate/cellgate/sdk/at"
	"github.com/cellgate/cellgate/sdk/atkit"
)

// dialect is one of the modem's two socket command families: SSL sockets
// (TLS run by the modem) and plain TCP sockets (TLS run by the agent).
type dialect struct {
	tls    bool
	open   string // "AT+QSSLOPEN"
	result string // its deferred result, "+QSSLOPEN:"
	send   string // "AT+QSSLSEND"
	recv   string // "AT+QSSLRECV"
	close  string // "AT+QSSLCLOSE"
}

var (
	sslDialect = &dialect{tls: true, open: "AT+QSSLOPEN", result: "+QSSLOPEN:", send: "AT+QSSLSEND", recv: "AT+QSSLRECV", close: "AT+QSSLCLOSE"}
	tcpDialect = &dialect{tls: false, open: "AT+QIOPEN", result: "+QIOPEN:", send: "AT+QISEND", recv: "AT+QIRD", close: "AT+QICLOSE"}
)

func (dl *dialect) closeCmd(id int) string { return fmt.Sprintf("%s=%d", dl.close, id) }

// openCmd is the open command in buffer access mode (0): received data
// waits in the modem until read, which back-pressures the server instead
// of overrunning the host.
func (dl *dialect) openCmd(pdp, sslCtx, id int, host string, port int) string {
	if dl.tls {
		return fmt.Sprintf("%s=%d,%d,%d,%s,%d,0", dl.open, pdp, sslCtx, id, atkit.Quote(host), port)
	}
	return fmt.Sprintf(`%s=%d,%d,"TCP",%s,%d,0,0`, dl.open, pdp, id, atkit.Quote(host), port)
}

// Dial opens a socket: an SSL socket on the provisioned SSL context
// req.Profile (DialModemTLS), or a plain TCP socket (DialPlainTCP). The
// modem answers OK at once and the outcome later (+QSSLOPEN: <id>,<err>);
// a failure is an *sdk.NetError carrying Quectel's code, and a Dial whose
// ctx ends first closes the half-open socket.
func (d *Driver) Dial(ctx context.Context, req sdk.DialRequest) (_ sdk.Session, err error) {
	defer func() { err = honour(ctx, err) }()
	dl, err := d.checkDial(req)
	if err != nil {
		return nil, err
	}
	if err := d.ensureReady(ctx); err != nil {
		return nil, err
	}
	if dl.tls {
		if err := d.setSNI(ctx, req); err != nil {
			return nil, err
		}
	}
	id, err := d.reserveID()
	if err != nil {
		return nil, err
	}
	defer d.unreserve(id)
	if err := d.openSocket(ctx, dl, id, req); err != nil {
		return nil, err
	}
	return d.startSession(id, dl), nil
}

// checkDial refuses a request the modem cannot carry out, before any
// command.
func (d *Driver) checkDial(req sdk.DialRequest) (*dialect, error) {
	d.mu.Lock()
	offline := d.cfg.NoNetwork
	d.mu.Unlock()
	if offline {
		return nil, &sdk.ModemError{Op: "dial", Code: -1, Text: "modem opened without network (ModemConfig.NoNetwork): Open it again without to dial"}
	}
	if req.Host == "" || req.Port < 1 || req.Port > 65535 {
		return nil, &sdk.NetError{Op: "dial", Session: -1, Kind: sdk.NetInvalid, Text: fmt.Sprintf("bad address %q port %d", req.Host, req.Port)}
	}
	if err := atkit.CheckString(req.Host); err != nil {
		return nil, &sdk.NetError{Op: "dial", Session: -1, Kind: sdk.NetInvalid, Text: "host " + err.Error()}
	}
	switch req.Mode {
	case sdk.DialPlainTCP:
		return tcpDialect, nil
	case sdk.DialModemTLS:
	default:
		return nil, &sdk.ModemError{Op: "dial", Code: -1, Text: fmt.Sprintf("dial mode %s is not supported (want modem or host)", req.Mode)}
	}
	if req.ServerName != "" && req.ServerName != req.Host {
		return nil, &sdk.NetError{Op: "dial", Session: -1, Kind: sdk.NetInvalid,
			Text: fmt.Sprintf("server name %q differs from host %q: the BG96 sends the dialled host as SNI", req.ServerName, req.Host)}
	}
	d.mu.Lock()
	_, ok := d.profiles[req.Profile]
	d.mu.Unlock()
	if !ok {
		return nil, &sdk.NetError{Op: "dial", Session: -1, Kind: sdk.NetCertificate, Text: fmt.Sprintf("SSL context %d was not provisioned", req.Profile)}
	}
	return sslDialect, nil
}

// setSNI sets the SSL context's "sni" item to what req asks for, when it
// differs. The modem refuses to change a context that has sockets open.
func (d *Driver) setSNI(ctx context.Context, req sdk.DialRequest) error {
	want := req.ServerName != ""
	d.mu.Lock()
	have := d.sni[req.Profile]
	d.mu.Unlock()
	if want == have {
		return nil
	}
	v := 0
	if want {
		v = 1
	}
	if _, err := d.command(ctx, fmt.Sprintf(`AT+QSSLCFG="sni",%d,%d`, req.Profile, v), cmdTimeout); err != nil {
		return d.sdkError(fmt.Sprintf("dial: set SNI on SSL context %d", req.Profile), err)
	}
	d.mu.Lock()
	d.sni[req.Profile] = want
	d.mu.Unlock()
	return nil
}

// reserveID takes the lowest socket id nobody uses.
func (d *Driver) reserveID() (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for id := range maxSockets {
		if d.sessions[id] == nil && !d.reserved[id] {
			d.reserved[id] = true
			return id, nil
		}
	}
	return -1, &sdk.NetError{Op: "dial", Session: -1, Kind: sdk.NetBusy, Text: fmt.Sprintf("all %d sockets are in use", maxSockets)}
}

func (d *Driver) unreserve(id int) {
	d.mu.Lock()
	delete(d.reserved, id)
	d.mu.Unlock()
}

// openSocket sends the open command and waits for its deferred result.
func (d *Driver) openSocket(ctx context.Context, dl *dialect, id int, req sdk.DialRequest) error {
	ch, err := d.channel()
	if err != nil {
		return err
	}
	d.mu.Lock()
	pdp, boot, wait := d.set.pdp, d.boot, openWait
	if dl.tls {
		wait += d.set.negotiateTime
	}
	d.mu.Unlock()
	if req.Timeout > 0 {
		wait = req.Timeout
	}
	// A reboot loses the pending open; waiting on is pointless.
	octx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stop := context.AfterFunc(boot, func() { cancel(errRebooted) })
	defer stop()

	w := ch.Expect(at.Prefix(fmt.Sprintf("%s %d,", dl.result, id)))
	defer w.Cancel()
	if _, err := d.command(octx, dl.openCmd(pdp, req.Profile, id, req.Host, req.Port), cmdTimeout); err != nil {
		var ae *at.Error
		if errors.As(err, &ae) {
			code, words := d.lastError(ctx)
			return netError("open", id, code, dl.tls, words)
		}
		return d.sdkError(fmt.Sprintf("open session %d", id), err)
	}
	wctx, wcancel := context.WithTimeout(octx, wait)
	defer wcancel()
	line, err := w.Wait(wctx)
	if err != nil {
		d.abandon(dl, id)
		if cause := context.Cause(octx); errors.Is(cause, errRebooted) {
			return &sdk.NetError{Op: "open", Session: id, Kind: sdk.NetNoNetwork, Text: "the modem rebooted during the open"}
		}
		if ctx.Err() != nil {
			return fmt.Errorf("open session %d: %w", id, ctx.Err())
		}
		return &sdk.TimeoutError{Op: fmt.Sprintf("open session %d", id), After: wait}
	}
	f := atkit.Fields(strings.TrimPrefix(at.Normalize(line), dl.result))
	code := -1
	if len(f) >= 2 {
		code, _ = atoi(f[1])
	}
	if code != 0 {
		d.abandon(dl, id)
		return netError("open", id, code, dl.tls, line)
	}
	return nil
}

// abandon closes a socket whose open failed or was given up, so its id can
// be used again (a failed open leaves it allocated on the modem).
func (d *Driver) abandon(dl *dialect, id int) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := d.command(ctx, dl.closeCmd(id), 5*time.Second); err != nil {
		d.log.Debug("close after a failed open", "session", id, "err", err)
	}
}
