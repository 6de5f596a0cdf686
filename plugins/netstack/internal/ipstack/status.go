package ipstack

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/cellgate/cellgate/sdk"
)

var _ sdk.StatusReporter = (*Transport)(nil)

// Status implements sdk.StatusReporter with what the host's IP stack can
// tell: PortOpen after Open, Registration "home" while an interface Open
// would use is up with a unicast address ("not registered" otherwise), the
// usable interfaces as Operator, and PDPActive the same as registered. There
// is no radio and no serial line: the signal is unknown (99) and the serial
// counters stay 0.
func (t *Transport) Status(ctx context.Context) (sdk.ModemStatus, error) {
	if err := ctx.Err(); err != nil {
		return sdk.ModemStatus{}, fmt.Errorf("status: %w", err)
	}
	t.mu.Lock()
	opened, port := t.opened, t.port
	t.mu.Unlock()
	st := sdk.ModemStatus{Time: time.Now().UTC(), PortOpen: opened, SignalRSSI: 99, SignalBER: 99, Registration: "not registered"}
	if !opened {
		return st, nil
	}
	_, ifaces, err := localAddr(port)
	up := err == nil && len(ifaces) > 0
	if up {
		st.Registration = "home"
		st.Operator = strings.Join(ifaces, ", ")
	}
	st.PDPActive = &up
	return st, nil
}
