package cli

import (
	"strings"
	"testing"
	"time"

	"github.com/cellgate/cellgate/agent"
)

// TestCertLine: the summary's cert line says which certificate is in use,
// when it expires, and what the last rotation did and why.
func TestCertLine(t *testing.T) {
	now := time.Date(2026, 12, 6, 5, 0, 0, 0, time.UTC)
	notAfter := now.Add(30*24*time.Hour + time.Hour)
	expired := now.Add(-time.Hour)
	at := now.Add(-10 * time.Minute)
	for _, c := range []struct {
		name string
		cs   agent.CertStatus
		want []string
	}{
		{"idle", agent.CertStatus{Serial: "1f2e", NotAfter: &notAfter, State: "idle"},
			[]string{"serial 1f2e, expires ", " (in 30d); idle"}},
		{"rotating", agent.CertStatus{Serial: "1f2e", State: "rotating", Step: "provisioned", Trigger: "renew_before"},
			[]string{"serial 1f2e; rotating (step provisioned, trigger renew_before)"}},
		{"rolled back", agent.CertStatus{Serial: "1f2e", State: "rolled_back", At: at, Error: "broker refused the new certificate"},
			[]string{"; rolled_back at " + at.Local().Format(time.RFC3339) + ": broker refused the new certificate"}},
		{"expired", agent.CertStatus{Serial: "1f2e", NotAfter: &expired, State: "idle"},
			[]string{"(EXPIRED); idle"}},
		{"renewal refused", agent.CertStatus{State: "idle", Refused: "signature by an unknown key"},
			[]string{"unknown; idle; renewal request refused: signature by an unknown key"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := certLine(&c.cs, now)
			for _, w := range c.want {
				if !strings.Contains(got, w) {
					t.Errorf("certLine = %q, want it to contain %q", got, w)
				}
			}
		})
	}
}

func TestSummaryShowsTheOldestWaitingReadingsAge(t *testing.T) {
	var b strings.Builder
	printStatusSummary(&b, map[string]any{"spool": map[string]any{
		"pending_readings": 12.0, "pending_bytes": 2048.0, "dropped_readings": 0.0, "oldest_age_seconds": 185.4,
	}})
	if want := "spool:    12 readings pending (2048 bytes, oldest 3m5s old), 0 dropped\n"; !strings.Contains(b.String(), want) {
		t.Errorf("summary:\n%s\nwant the line %q", b.String(), want)
	}
}
