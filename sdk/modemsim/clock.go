package modemsim

import (
	"fmt"
	"time"
)

// The clock-jump fault (FaultClockJump) moves the module's RTC, as a bad
// network time update or an RTC glitch does on a real module. Everything
// that reads the module's clock moves with it: AT+CCLK? answers the new
// time, and a session opened afterwards checks certificate validity at it
// when its SSL context has ignorelocaltime 0 (tls.Config.Time and the
// chain check of ssl.go run on the RTC as it was at AT+CCHOPEN /
// AT+QSSLOPEN). A session already open is not affected: TLS checks
// validity at the handshake only. The clock keeps running from where it
// jumped to until it is set again (AT+CCLK), jumps again, or the module
// reboots, when it restarts at 1980-01-06 (or, with Config.NetworkTime, at
// the network's time).

// rtcFirst and rtcEnd bound what AT+CCLK's two-digit year shows: 80-99 are
// 1980-1999, 00-79 are 2000-2079.
var (
	rtcFirst = time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC)
	rtcEnd   = time.Date(2080, 1, 1, 0, 0, 0, 0, time.UTC)
)

// clockJump moves the RTC by d on the core. It fails, leaving the clock as
// it was, if the result is a time AT+CCLK could not show.
func (m *Modem) clockJump(d time.Duration) error {
	to := m.rtcNow().Add(d)
	if to.Before(rtcFirst) || !to.Before(rtcEnd) {
		return fmt.Errorf("fault clock-jump %s: the clock would read %s, outside the 1980-2079 that AT+CCLK shows",
			d, to.UTC().Format(time.RFC3339))
	}
	m.st.rtcBase = m.st.rtcBase.Add(d)
	return nil
}
