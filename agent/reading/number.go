package reading

import (
	"errors"
	"fmt"
	"math/big"
	"strconv"
	"strings"
)

// Number limits. A reading's number keeps every digit it was sent with, so
// the limits bound what a hostile sender can make the agent store and
// render, not precision that real sensors have.
const (
	// MaxNumberDigits is the most significant digits a number may have
	// (leading zeros do not count; trailing ones do, as they state precision).
	MaxNumberDigits = 64
	// MaxNumberExponent bounds the decimal exponent of a number in either
	// direction, after the fraction digits are folded into it.
	MaxNumberExponent = 9999
)

// plainLeadingZeros is how many zeros after the decimal point a canonical
// number is still written with in plain notation: 0.000001 stays as it is,
// 0.0000001 becomes 1e-7. Past that the plain form only grows.
const plainLeadingZeros = 5

// decimal is a number as a sign, a string of significant digits without
// leading zeros ("0" for zero) and a power of ten: value = ±digits × 10^exp.
// Two literals with the same decimal are the same number written with the
// same precision ("21.50" and "2.150e1"); "21.5" is a different decimal.
type decimal struct {
	neg    bool
	digits string
	exp    int
}

var errNotNumber = errors.New("not a JSON number")

// parseDecimal parses a JSON number literal (RFC 8259 grammar, checked
// here) into its decimal. Negative zero becomes zero: the canonical form
// has no way to say it, and no sensor means it.
func parseDecimal(lit string) (decimal, error) {
	var d decimal
	i := 0
	if i < len(lit) && lit[i] == '-' {
		d.neg = true
		i++
	}
	intStart := i
	switch {
	case i < len(lit) && lit[i] == '0':
		i++
	case i < len(lit) && lit[i] >= '1' && lit[i] <= '9':
		for i < len(lit) && isDigit(lit[i]) {
			i++
		}
	default:
		return d, errNotNumber
	}
	intPart := lit[intStart:i]
	var frac string
	if i < len(lit) && lit[i] == '.' {
		i++
		fs := i
		for i < len(lit) && isDigit(lit[i]) {
			i++
		}
		if i == fs {
			return d, errNotNumber
		}
		frac = lit[fs:i]
	}
	exp := 0
	if i < len(lit) && (lit[i] == 'e' || lit[i] == 'E') {
		i++
		eneg := false
		if i < len(lit) && (lit[i] == '+' || lit[i] == '-') {
			eneg = lit[i] == '-'
			i++
		}
		es := i
		for i < len(lit) && isDigit(lit[i]) {
			// Saturate: anything this large is refused below anyway.
			if exp < 1<<30 {
				exp = exp*10 + int(lit[i]-'0')
			}
			i++
		}
		if i == es {
			return d, errNotNumber
		}
		if eneg {
			exp = -exp
		}
	}
	if i != len(lit) {
		return d, errNotNumber
	}
	digits := strings.TrimLeft(intPart+frac, "0")
	if digits == "" {
		digits = "0"
		d.neg = false
	}
	d.digits = digits
	d.exp = exp - len(frac)
	if len(digits) > MaxNumberDigits {
		return d, fmt.Errorf("number has %d significant digits, more than %d", len(digits), MaxNumberDigits)
	}
	if d.exp > MaxNumberExponent || d.exp < -MaxNumberExponent {
		return d, fmt.Errorf("number's exponent is out of range (at most ±%d)", MaxNumberExponent)
	}
	return d, nil
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// String renders d canonically; parseDecimal(d.String()) == d for every d
// it produced. Plain notation is used where it is short ("21.50", "0.05",
// "1000"), e-notation otherwise ("1e3" keeps a precision that "1000" would
// overstate; "15e-8" avoids a run of zeros).
func (d decimal) String() string {
	var b strings.Builder
	if d.neg {
		b.WriteByte('-')
	}
	switch {
	case d.exp == 0:
		b.WriteString(d.digits)
	case d.exp > 0:
		b.WriteString(d.digits)
		b.WriteByte('e')
		b.WriteString(strconv.Itoa(d.exp))
	default:
		k := -d.exp
		switch n := len(d.digits); {
		case k < n:
			b.WriteString(d.digits[:n-k])
			b.WriteByte('.')
			b.WriteString(d.digits[n-k:])
		case k-n <= plainLeadingZeros:
			b.WriteString("0.")
			b.WriteString(strings.Repeat("0", k-n))
			b.WriteString(d.digits)
		default:
			b.WriteString(d.digits)
			b.WriteString("e-")
			b.WriteString(strconv.Itoa(k))
		}
	}
	return b.String()
}

// mantissa returns ±digits as an int64 when it fits, else as a big.Int.
func (d decimal) mantissa() (int64, *big.Int) {
	s := d.digits
	if d.neg {
		s = "-" + s
	}
	if v, err := strconv.ParseInt(s, 10, 64); err == nil {
		return v, nil
	}
	n, _ := new(big.Int).SetString(s, 10)
	return 0, n
}

// decimalFromInt builds the decimal ±|m| × 10^exp; m is the mantissa as a
// big integer. It applies the same limits as parseDecimal.
func decimalFromInt(m *big.Int, exp int) (decimal, error) {
	d := decimal{neg: m.Sign() < 0, digits: new(big.Int).Abs(m).String(), exp: exp}
	if len(d.digits) > MaxNumberDigits {
		return d, fmt.Errorf("number has %d significant digits, more than %d", len(d.digits), MaxNumberDigits)
	}
	if exp > MaxNumberExponent || exp < -MaxNumberExponent {
		return d, fmt.Errorf("number's exponent %d is out of range (at most ±%d)", exp, MaxNumberExponent)
	}
	return d, nil
}

// canonicalNumber returns the canonical spelling of a JSON number literal.
func canonicalNumber(lit string) (string, error) {
	d, err := parseDecimal(lit)
	if err != nil {
		return "", err
	}
	return d.String(), nil
}
