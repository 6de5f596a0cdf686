package bg96

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

// statusTimeout bounds each query of Status. A healthy modem answers them
// at once; one that is rebooting answers none, and the poll must not hold
// the modem for long.
const statusTimeout = 5 * time.Second

var _ sdk.StatusReporter = (*Driver)(nil)

// Status implements the optional sdk.StatusReporter (contract 1.1): the
// SIM (AT+CPIN?), the signal (AT+CSQ), the CS, GPRS and LTE registrations
// (AT+CREG?, AT+CGREG?, AT+CEREG?), the operator (AT+COPS?) and whether
// the driver's PDP context is active (AT+QIACT?), plus the bytes written to
// and read from the port since Open.
//
// Each query is its own exchange with the modem, so a session's read or
// send waits for at most one short query and never interleaves with one;
// Status sends nothing a session could mistake for its own answer. A query
// the modem refuses (ERROR, +CME ERROR) leaves its field empty; a modem
// that answers none of them is an error. Status never brings a rebooted
// modem up again: the next Dial does. Before Open, or after Stop, it
// reports PortOpen false without touching anything.
func (d *Driver) Status(ctx context.Context) (sdk.ModemStatus, error) {
	d.mu.Lock()
	ch, pdp := d.ch, d.set.pdp
	d.mu.Unlock()
	st := sdk.ModemStatus{Time: time.Now().UTC(), SignalRSSI: 99, SignalBER: 99}
	if ch == nil {
		st.SerialTxBytes, st.SerialRxBytes = d.serial.Counts()
		return st, nil
	}
	st.PortOpen = true
	answered := 0
	var firstErr error
	for _, q := range statusQueries(&st, pdp) {
		err := d.query(ctx, ch, q)
		var ae *at.Error
		var cme *at.CMEError
		switch {
		case err == nil, errors.As(err, &cme), errors.As(err, &ae):
			answered++ // the modem answered, if only to refuse
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
		return st, d.sdkError("status", firstErr)
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

// query runs q as one exchange under statusTimeout.
func (d *Driver) query(ctx context.Context, ch *at.Channel, q statusQuery) error {
	r, err := d.commandOn(ctx, ch, q.cmd, statusTimeout)
	var cme *at.CMEError
	switch {
	case err == nil:
		q.parse(r)
	case errors.As(err, &cme) && q.onCME != nil:
		q.onCME(cme)
	}
	return err
}

// statusQueries are the commands Status sends, in order, filling st; pdp
// is the driver's PDP context id.
func statusQueries(st *sdk.ModemStatus, pdp int) []statusQuery {
	reg := func(prefix string, into *string) statusQuery {
		// +CxREG: <n>,<stat>[,...]
		return statusQuery{cmd: "AT" + strings.TrimSuffix(prefix, ":") + "?", parse: func(r *at.Response) {
			if v, ok := atkit.Field(r, prefix); ok {
				if f := atkit.Fields(v); len(f) >= 2 {
					if stat, err := atoi(f[1]); err == nil {
						*into = atkit.RegStat(stat).String()
					}
				}
			}
		}}
	}
	return []statusQuery{
		{cmd: "AT+CPIN?", parse: func(r *at.Response) {
			if v, ok := atkit.Field(r, "+CPIN:"); ok {
				st.SIM = atkit.SIMState(v)
			}
		}, onCME: func(e *at.CMEError) { st.SIM = atkit.SIMState(e.Text) }},
		{cmd: "AT+CSQ", parse: func(r *at.Response) {
			// +CSQ: <rssi>,<ber>
			if v, ok := atkit.Field(r, "+CSQ:"); ok {
				if f := atkit.Fields(v); len(f) == 2 {
					rssi, err1 := atoi(f[0])
					ber, err2 := atoi(f[1])
					if err1 == nil && err2 == nil {
						st.SignalRSSI, st.SignalBER = rssi, ber
					}
				}
			}
		}},
		reg("+CREG:", &st.CREG),
		reg("+CGREG:", &st.CGREG),
		reg("+CEREG:", &st.CEREG),
		{cmd: "AT+COPS?", parse: func(r *at.Response) {
			// +COPS: <mode>[,<format>,<oper>[,<AcT>]]
			if v, ok := atkit.Field(r, "+COPS:"); ok {
				if f := atkit.Fields(v); len(f) >= 3 {
					st.Operator = f[2]
				}
			}
		}},
		{cmd: "AT+QIACT?", parse: func(r *at.Response) {
			// One line per active context, +QIACT: <ctx>,<state>,<type>[,<ip>];
			// none at all when no context is active.
			active := false
			for _, l := range r.Lines {
				if v, ok := strings.CutPrefix(at.Normalize(l), "+QIACT:"); ok {
					if f := atkit.Fields(v); len(f) >= 2 && f[0] == strconv.Itoa(pdp) {
						active = f[1] == "1"
					}
				}
			}
			st.PDPActive = &active
		}},
	}
}
