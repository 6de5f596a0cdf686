package sdk_test

import (
	"strings"
	"testing"

	"github.com/cellgate/cellgate/sdk"
)

func TestCheckModelName(t *testing.T) {
	for _, c := range []struct {
		name, model string
		ok          bool
	}{
		{"ShippedModel", "sim7600", true},
		{"DigitFirst", "7600", true},
		{"InnerDashAndUnderscore", "bg96_x-2", true},
		{"SixtyFourCharacters", strings.Repeat("a", 64), true},
		{"Empty", "", false},
		{"LeadingDashLooksLikeAnOption", "-sim7600", false},
		{"LeadingUnderscore", "_sim7600", false},
		{"UpperCase", "SIM7600", false},
		{"Space", "sim 7600", false},
		{"PathSeparator", "../sim7600", false},
		{"Dot", "sim7600.v2", false},
		{"SixtyFiveCharacters", strings.Repeat("a", 65), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := sdk.CheckModelName(c.model)
			if c.ok {
				if err != nil {
					t.Fatalf("CheckModelName(%q) = %v, want nil", c.model, err)
				}
				return
			}
			want := `modem model "` + c.model + `": want 1 to 64 lower-case letters`
			if err == nil || !strings.HasPrefix(err.Error(), want) {
				t.Fatalf("CheckModelName(%q) = %v, want an error starting %q", c.model, err, want)
			}
		})
	}
}
