package redact

import (
	"net/url"
	"testing"
)

func TestURL(t *testing.T) {
	for name, c := range map[string]struct{ in, want string }{
		"NoSecretIsUnchanged":             {"mqtts://broker.example.com:8883", "mqtts://broker.example.com:8883"},
		"PasswordHidden":                  {"mqtts://gw:s3cret@broker.example.com:8883", "mqtts://gw:<redacted>@broker.example.com:8883"},
		"UserWithoutPasswordShown":        {"mqtts://gw@broker.example.com", "mqtts://gw@broker.example.com"},
		"TokenHiddenQuerySorted":          {"https://x.example.com/in?site=a&token=t0k&b=2", "https://x.example.com/in?b=2&site=a&token=<redacted>"},
		"QueryWithoutSecretKeepsItsOrder": {"https://x.example.com/in?site=a&b=2", "https://x.example.com/in?site=a&b=2"},
		"KeyMatchedWithoutCase":           {"https://x.example.com/in?API_KEY=k", "https://x.example.com/in?API_KEY=<redacted>"},
		"PasswordAndQueryBothHidden":      {"https://u:p@x.example.com/in?sig=abc", "https://u:<redacted>@x.example.com/in?sig=<redacted>"},
		"RepeatedSecretHiddenOnce":        {"https://x.example.com/in?password=1&password=2&ok=no", "https://x.example.com/in?ok=no&password=<redacted>"},
		"UnparsableWithUserInfoHidden":    {"https://u:p%zz@x.example.com", Mark},
		"UnparsableWithoutUserInfoShown":  {"://not a url", "://not a url"},
		"PathsAreNotSecrets":              {"file:///etc/cellgate/key.pem", "file:///etc/cellgate/key.pem"},
	} {
		t.Run(name, func(t *testing.T) {
			if got := URL(c.in); got != c.want {
				t.Fatalf("URL(%q) = %q, want %q", c.in, got, c.want)
			}
		})
	}
}

func TestURLValueLeavesItsArgumentAlone(t *testing.T) {
	const raw = "https://u:p@x.example.com/in?device=gw1&token=t0k"
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := URLValue(u), "https://u:<redacted>@x.example.com/in?device=gw1&token=<redacted>"; got != want {
		t.Fatalf("URLValue = %q, want %q", got, want)
	}
	if u.String() != raw {
		t.Fatalf("URLValue changed its argument to %q", u)
	}
	if got := URLValue(nil); got != "" {
		t.Fatalf("URLValue(nil) = %q, want empty", got)
	}
}
