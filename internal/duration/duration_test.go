package duration

import (
	"strings"
	"testing"
	"time"
)

func TestParseAcceptsGoDurationsAndDays(t *testing.T) {
	cases := map[string]time.Duration{
		"0":           0,
		"0s":          0,
		"500ms":       500 * time.Millisecond,
		"1m30s":       90 * time.Second,
		"720h":        720 * time.Hour,
		"30d":         30 * Day,
		"1d":          Day,
		"0d":          0,
		"1d12h":       36 * time.Hour,
		"2d3h4m5s":    2*Day + 3*time.Hour + 4*time.Minute + 5*time.Second,
		"1d1.5h":      Day + 90*time.Minute,
		"-2d":         -2 * Day,
		"-1d12h":      -36 * time.Hour,
		"+7d":         7 * Day,
		"-5m":         -5 * time.Minute,
		"106751d":     106751 * Day,
		"1d500ms":     Day + 500*time.Millisecond,
		"10000d":      10000 * Day,
		"3d0s":        3 * Day,
		"1h30m":       90 * time.Minute,
		"2562047h":    2562047 * time.Hour,
		"365d":        365 * Day,
		"1d0h0m0s":    Day,
		"100d100h":    100*Day + 100*time.Hour,
		"0d0s":        0,
		"12d1ns":      12*Day + 1,
		"1d1us":       Day + time.Microsecond,
		"4d23h59m":    5*Day - time.Minute,
		"7d":          7 * Day,
		"90d":         90 * Day,
		"2h45m":       165 * time.Minute,
		"1.5h":        90 * time.Minute,
		"300ms":       300 * time.Millisecond,
		"1d2h3m4s5ms": Day + 2*time.Hour + 3*time.Minute + 4*time.Second + 5*time.Millisecond,
	}
	for in, want := range cases {
		got, err := Parse(in)
		if err != nil {
			t.Errorf("Parse(%q): %v", in, err)
			continue
		}
		if got != want {
			t.Errorf("Parse(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestParseRefusesWithTheInputInTheError(t *testing.T) {
	cases := map[string]string{
		"":                        "is not a duration",
		"d":                       "is not a duration",
		"1.5d":                    "is not a duration",
		"30 d":                    "is not a duration",
		"30D":                     "is not a duration",
		"1d-2h":                   "is not a duration",
		"1d+2h":                   "is not a duration",
		"1dd":                     "is not a duration",
		"1d2":                     "is not a duration",
		"2w":                      "is not a duration",
		"--1d":                    "is not a duration",
		"106752d":                 "too long",
		"106751d24h":              "too long",
		"9999999999999999999999d": "too long",
		"5":                       "is not a duration",
		"ten days":                "is not a duration",
	}
	for in, want := range cases {
		_, err := Parse(in)
		if err == nil {
			t.Errorf("Parse(%q) succeeded, want an error containing %q", in, want)
			continue
		}
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%q) error %q does not contain %q", in, err, want)
		}
		if in != "" && len(in) <= 57 && !strings.Contains(err.Error(), `"`+in+`"`) {
			t.Errorf("Parse(%q) error %q does not quote the input", in, err)
		}
	}
}

func TestFormatIsReadBackByParse(t *testing.T) {
	cases := map[time.Duration]string{
		0:                          "0s",
		30 * Day:                   "30d",
		Day:                        "1d",
		-2 * Day:                   "-2d",
		36 * time.Hour:             "36h",
		time.Hour:                  "1h",
		90 * time.Second:           "1m30s",
		500 * time.Millisecond:     "500ms",
		25*time.Hour + time.Minute: "25h1m",
		366 * Day:                  "366d",
		time.Duration(1<<63 - 1):   "2562047h47m16.854775807s",
	}
	for d, want := range cases {
		got := Format(d)
		if got != want {
			t.Errorf("Format(%v) = %q, want %q", d, got, want)
		}
		back, err := Parse(got)
		if err != nil || back != d {
			t.Errorf("Parse(Format(%v)) = %v, %v; want it back", d, back, err)
		}
	}
}
