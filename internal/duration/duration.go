// Package duration is cellgate's one way to read and write a length of time
// as an operator types it: Go's durations (500ms, 2s, 1m30s, 720h) plus whole
// days with the suffix d (30d), alone or before a Go duration (1d12h).
// Configuration keys, `config sign --expires` and `pki serve --validity` all
// read durations with Parse, and effective configuration prints them with
// Format, so whatever cellgate prints it also reads back.
package duration

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Day is 24 hours: cellgate's days are exact, with no calendar or time zone.
const Day = 24 * time.Hour

// Want is the hint errors give after saying what was wrong.
const Want = "want e.g. 500ms, 2s, 1m30s, 1h, 30d or 1d12h"

// Parse reads s as Go's time.ParseDuration does, and also accepts a whole
// number of days with the suffix d, optionally followed by a Go duration
// ("30d", "1d12h", "-2d"). It fails, quoting s, on an empty string, a
// fraction of a day ("1.5d"), a unit it does not know, a sign after the
// days ("1d-2h") and a value beyond about 292 years.
func Parse(s string) (time.Duration, error) {
	body, neg := strings.CutPrefix(s, "-")
	if !neg {
		body = strings.TrimPrefix(body, "+")
	}
	i := 0
	for i < len(body) && body[i] >= '0' && body[i] <= '9' {
		i++
	}
	if i == 0 || i == len(body) || body[i] != 'd' {
		// No day part: a plain Go duration (or not a duration at all).
		d, err := time.ParseDuration(s)
		if err != nil {
			return 0, notDuration(s)
		}
		return d, nil
	}
	days, err := strconv.ParseInt(body[:i], 10, 64)
	if err != nil || days > math.MaxInt64/int64(Day) {
		return 0, fmt.Errorf("%q is too long for a duration (at most about 106751d)", s)
	}
	d := time.Duration(days) * Day
	if rest := body[i+1:]; rest != "" {
		if rest[0] == '-' || rest[0] == '+' {
			return 0, notDuration(s)
		}
		r, err := time.ParseDuration(rest)
		if err != nil {
			return 0, notDuration(s)
		}
		if d > math.MaxInt64-r {
			return 0, fmt.Errorf("%q is too long for a duration (at most about 106751d)", s)
		}
		d += r
	}
	if neg {
		d = -d
	}
	return d, nil
}

func notDuration(s string) error {
	if len(s) > 60 {
		s = s[:57] + "..."
	}
	return fmt.Errorf("%q is not a duration (%s)", s, Want)
}

// Format renders d so that Parse(Format(d)) == d: whole days as "30d", other
// values as time.Duration.String does without the zero minutes and seconds
// it appends ("1h" rather than "1h0m0s", "36h", "1m30s").
func Format(d time.Duration) string {
	if d != 0 && d%Day == 0 {
		return strconv.FormatInt(int64(d/Day), 10) + "d"
	}
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
