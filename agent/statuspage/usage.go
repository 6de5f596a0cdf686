package statuspage

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/cellgate/cellgate/internal/atomicfile"
)

// UsageFile is the name of the file in Options.StateDir that keeps the
// data used over the air today and this month across restarts.
const UsageFile = "air-usage.json"

// usageVersion is the format of UsageFile this package writes and reads.
const usageVersion = 1

// Rollover says when the totals start again, as the page shows it.
const Rollover = "days and months start at 00:00 UTC"

// usageState is UsageFile's content.
type usageState struct {
	Version      int    `json:"version"`
	Day          string `json:"day"` // 2006-01-02, UTC
	DayTxBytes   uint64 `json:"day_tx_bytes"`
	DayRxBytes   uint64 `json:"day_rx_bytes"`
	Month        string `json:"month"` // 2006-01, UTC
	MonthTxBytes uint64 `json:"month_tx_bytes"`
	MonthRxBytes uint64 `json:"month_rx_bytes"`
}

// UsageTotals is the data used over the air, as /v1/history reports it.
type UsageTotals struct {
	// Day (2006-01-02) and Month (2006-01) are the UTC day and month the
	// totals belong to; empty before the first sample.
	Day          string `json:"day"`
	DayTxBytes   uint64 `json:"day_tx_bytes"`
	DayRxBytes   uint64 `json:"day_rx_bytes"`
	Month        string `json:"month"`
	MonthTxBytes uint64 `json:"month_tx_bytes"`
	MonthRxBytes uint64 `json:"month_rx_bytes"`
	Rollover     string `json:"rollover"`
}

// usage totals the over-the-air bytes by UTC day and month. Page.mu
// guards it.
type usage struct {
	state usageState
	// lastTx and lastRx are this run's counters at the previous sample.
	// They start at zero with every Page: the counters of a new run count
	// from zero, whatever the previous run reached.
	lastTx, lastRx uint64
}

// loadUsage reads dir/UsageFile. A missing file starts from zero. A file
// that is not a valid UsageFile is renamed aside (nothing is deleted) and
// the totals start from zero; setAside then says what happened, for the
// page's warnings. Only a file that cannot be read or set aside is an
// error.
func loadUsage(dir string) (u *usage, setAside string, err error) {
	path := filepath.Join(dir, UsageFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &usage{state: usageState{Version: usageVersion}}, "", nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("read usage totals: %w", err)
	}
	st, perr := parseUsage(data)
	if perr == nil {
		return &usage{state: st}, "", nil
	}
	aside := path + ".bad-" + strconv.FormatInt(time.Now().UnixNano(), 10)
	if err := os.Rename(path, aside); err != nil {
		return nil, "", fmt.Errorf("usage totals %s: %v; and setting it aside failed: %w", path, perr, err)
	}
	msg := fmt.Sprintf("usage totals %s: %v; kept as %s, today's and this month's totals start again from zero", path, perr, aside)
	return &usage{state: usageState{Version: usageVersion}}, msg, nil
}

// parseUsage decodes and checks UsageFile's content; errors name the byte
// offset or the field at fault.
func parseUsage(data []byte) (usageState, error) {
	var st usageState
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&st); err != nil {
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &se):
			return st, fmt.Errorf("byte %d: %w", se.Offset, err)
		case errors.As(err, &te):
			return st, fmt.Errorf("byte %d: field %q: %w", te.Offset, te.Field, err)
		case errors.Is(err, io.EOF):
			return st, errors.New("empty file")
		}
		return st, err
	}
	if dec.More() {
		return st, fmt.Errorf("byte %d: data after the JSON object", dec.InputOffset())
	}
	if st.Version != usageVersion {
		return st, fmt.Errorf("field \"version\": %d, this agent reads version %d", st.Version, usageVersion)
	}
	if _, err := time.Parse(time.DateOnly, st.Day); st.Day != "" && err != nil {
		return st, fmt.Errorf("field \"day\": %q is not a date (2006-01-02)", st.Day)
	}
	if _, err := time.Parse("2006-01", st.Month); st.Month != "" && err != nil {
		return st, fmt.Errorf("field \"month\": %q is not a month (2006-01)", st.Month)
	}
	return st, nil
}

// add counts the bytes s adds since the previous sample towards s's UTC
// day and month, starting a new day or month when s is past the stored
// one. A sample dated before the stored day (the clock went back) counts
// towards the stored day and month: totals are never reset backwards. It
// reports whether the state changed and must be persisted.
func (u *usage) add(s Sample) bool {
	t := s.Time.UTC()
	day, month := t.Format(time.DateOnly), t.Format("2006-01")
	tx, rx := counterDelta(u.lastTx, s.BytesAirTx), counterDelta(u.lastRx, s.BytesAirRx)
	u.lastTx, u.lastRx = s.BytesAirTx, s.BytesAirRx
	changed := false
	// ISO dates order as strings.
	if day > u.state.Day {
		u.state.Day, u.state.DayTxBytes, u.state.DayRxBytes = day, 0, 0
		changed = true
	}
	if month > u.state.Month {
		u.state.Month, u.state.MonthTxBytes, u.state.MonthRxBytes = month, 0, 0
		changed = true
	}
	if tx != 0 || rx != 0 {
		u.state.DayTxBytes += tx
		u.state.DayRxBytes += rx
		u.state.MonthTxBytes += tx
		u.state.MonthRxBytes += rx
		changed = true
	}
	return changed
}

func (u *usage) totals() UsageTotals {
	s := u.state
	return UsageTotals{Day: s.Day, DayTxBytes: s.DayTxBytes, DayRxBytes: s.DayRxBytes,
		Month: s.Month, MonthTxBytes: s.MonthTxBytes, MonthRxBytes: s.MonthRxBytes, Rollover: Rollover}
}

// encode returns UsageFile's content for the current state.
func (u *usage) encode() []byte {
	data, _ := json.MarshalIndent(u.state, "", "  ") // plain fields: cannot fail
	return append(data, '\n')
}

// writeUsage replaces dir/UsageFile with data atomically.
func writeUsage(dir string, data []byte) error {
	return atomicfile.Write(dir, UsageFile, data, 0o644)
}
