package simcom

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/cellgate/cellgate/sdk"
	"github.com/cellgate/cellgate/sdk/at"
	"github.com/cellgate/cellgate/sdk/atkit"
)

// statusCommandTimeout bounds each query of Status. They are answered at
// once by a healthy modem; a modem that is rebooting answers none, and the
// poll must not hold the channel for long.
const statusCommandTimeout = 5 * time.Second

var _ sdk.StatusReporter = (*Driver)(nil)

// Status implements sdk.StatusReporter: it asks the modem for its SIM,
// signal, registrations, operator and packet data context, one AT command
// at a time. Each command takes the channel's command slot on its own, so a
// session's AT+CCHSEND waits for at most one short query and never
// interleaves with one. A query the modem refuses (+CME ERROR) leaves its
// field empty; a modem that answers none of them is an error. Status never
// re-runs the bring-up: a modem that rebooted is brought up by the next
// Dial.
func (d *Driver) Status(ctx context.Context) (sdk.ModemStatus, error) {
	d.mu.Lock()
	ch, stopped := d.ch, d.stopped
	d.mu.Unlock()
	st := sdk.ModemStatus{Time: time.Now().UTC(), SignalRSSI: 99, SignalBER: 99}
	st.SerialTxBytes, st.SerialRxBytes = d.serial.Counts()
	if ch == nil || stopped {
		return st, nil
	}
	st.PortOpen = true
	answered := 0
	var firstErr error
	for _, q := range statusQueries(&st) {
		err := d.query(ctx, ch, q)
		var cme *at.CMEError
		switch {
		case err == nil, errors.As(err, &cme):
			answered++
		case ctx.Err() != nil:
			return st, fmt.Errorf("status: %w", ctx.Err())
		case firstErr == nil:
			firstErr = err
		}
		if errors.Is(err, at.ErrClosed) {
			break
		}
	}
	st.Registration = atkit.BestRegistration(st.CREG, st.CGREG, st.CEREG)
	st.SerialTxBytes, st.SerialRxBytes = d.serial.Counts()
	if answered == 0 && firstErr != nil {
		return st, d.modemErr("status", firstErr)
	}
	return st, nil
}

// statusQuery is one command of Status and what it fills in.
type statusQuery struct {
	cmd   string
	parse func(r *at.Response)
	// onCME, when set, reads a +CME ERROR answer (AT+CPIN? without a SIM).
	onCME func(e *at.CMEError)
}

// query runs q under statusCommandTimeout.
func (d *Driver) query(ctx context.Context, ch *at.Channel, q statusQuery) error {
	qctx, cancel := context.WithTimeout(ctx, statusCommandTimeout)
	defer cancel()
	r, err := ch.Command(qctx, q.cmd)
	var cme *at.CMEError
	switch {
	case err == nil:
		q.parse(r)
	case errors.As(err, &cme) && q.onCME != nil:
		q.onCME(cme)
	}
	return err
}

// statusQueries are the commands Status sends, in order, filling st.
func statusQueries(st *sdk.ModemStatus) []statusQuery {
	reg := func(prefix string, into *string) statusQuery {
		return statusQuery{cmd: "AT" + strings.TrimSuffix(prefix, ":") + "?", parse: func(r *at.Response) {
			if v, ok := field(r, prefix); ok {
				if parts := splitFields(v); len(parts) >= 2 {
					if stat, err := strconv.Atoi(parts[1]); err == nil {
						*into = registrationName(stat)
					}
				}
			}
		}}
	}
	return []statusQuery{
		{cmd: "AT+CPIN?", parse: func(r *at.Response) {
			if v, ok := field(r, "+CPIN:"); ok {
				st.SIM = atkit.SIMState(v)
			}
		}, onCME: func(e *at.CMEError) { st.SIM = atkit.SIMState(e.Text) }},
		{cmd: "AT+CSQ", parse: func(r *at.Response) {
			if v, ok := field(r, "+CSQ:"); ok {
				if rssi, ber, err := twoInts(v); err == nil {
					st.SignalRSSI, st.SignalBER = rssi, ber
				}
			}
		}},
		reg("+CREG:", &st.CREG),
		reg("+CGREG:", &st.CGREG),
		reg("+CEREG:", &st.CEREG),
		{cmd: "AT+COPS?", parse: func(r *at.Response) {
			// +COPS: <mode>[,<format>,<oper>[,<AcT>]]
			if v, ok := field(r, "+COPS:"); ok {
				if parts := splitFields(v); len(parts) >= 3 {
					st.Operator = parts[2]
				}
			}
		}},
		{cmd: "AT+CGACT?", parse: func(r *at.Response) {
			active := false
			for _, l := range r.Lines {
				if v, ok := strings.CutPrefix(at.Normalize(l), "+CGACT:"); ok {
					if cid, state, err := twoInts(v); err == nil && cid == 1 {
						active = state == 1
					}
				}
			}
			st.PDPActive = &active
		}},
	}
}
