package reading

import (
	"math/big"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
)

func TestDecimalStringRoundTrips(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		var lit strings.Builder
		if rng.IntN(2) == 0 {
			lit.WriteByte('-')
		}
		lit.WriteString(strconv.Itoa(rng.IntN(100000) * []int{0, 1, 10, 1000}[rng.IntN(4)]))
		if rng.IntN(2) == 0 {
			lit.WriteByte('.')
			lit.WriteString(strings.Repeat("0", rng.IntN(8)))
			lit.WriteString(strconv.Itoa(rng.IntN(1000)))
		}
		if rng.IntN(3) == 0 {
			lit.WriteString([]string{"e", "E", "e+", "e-", "E-"}[rng.IntN(5)])
			lit.WriteString(strconv.Itoa(rng.IntN(40)))
		}
		d, err := parseDecimal(lit.String())
		if err != nil {
			t.Fatalf("parseDecimal(%s): %v", lit.String(), err)
		}
		s := d.String()
		back, err := parseDecimal(s)
		if err != nil || back != d {
			t.Fatalf("%s → %+v → %q → %+v, %v: not a fixed point", lit.String(), d, s, back, err)
		}
		// Same value: compare as exact rationals.
		a, ok1 := new(big.Rat).SetString(lit.String())
		b, ok2 := new(big.Rat).SetString(s)
		if !ok1 || !ok2 || a.Cmp(b) != 0 {
			t.Fatalf("%s and its canonical form %s differ in value", lit.String(), s)
		}
	}
}

func TestParseDecimalRefusesNonNumbers(t *testing.T) {
	for _, lit := range []string{"", "-", "+1", "01", "1.", ".5", "1e", "1e+", "0x10", "1_000", "NaN", "Infinity", "1 ", " 1"} {
		if d, err := parseDecimal(lit); err == nil {
			t.Errorf("parseDecimal(%q) = %+v, want an error", lit, d)
		}
	}
}

func TestDecimalMantissa(t *testing.T) {
	for _, tc := range []struct {
		lit   string
		small int64
		big   string
	}{
		{"-21.5", -215, ""},
		{"9223372036854775807", 9223372036854775807, ""},
		{"-9223372036854775808", -9223372036854775808, ""},
		{"9223372036854775808", 0, "9223372036854775808"},
		{"-123456789012345678901234567890", 0, "-123456789012345678901234567890"},
	} {
		d, err := parseDecimal(tc.lit)
		if err != nil {
			t.Fatal(err)
		}
		m, b := d.mantissa()
		switch {
		case tc.big == "" && (b != nil || m != tc.small):
			t.Errorf("%s: mantissa %d, %v; want %d", tc.lit, m, b, tc.small)
		case tc.big != "" && (b == nil || b.String() != tc.big):
			t.Errorf("%s: mantissa %d, %v; want big %s", tc.lit, m, b, tc.big)
		}
	}
}
