package conformance

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// MarshalJSON writes the result with its duration in milliseconds
// ("duration_ms"), the form CI tools read.
func (r Result) MarshalJSON() ([]byte, error) {
	type plain Result
	return json.Marshal(struct {
		plain
		DurationMS int64 `json:"duration_ms"`
	}{plain(r), r.Duration.Milliseconds()})
}

// UnmarshalJSON reads what MarshalJSON wrote.
func (r *Result) UnmarshalJSON(b []byte) error {
	type plain Result
	var v struct {
		plain
		DurationMS int64 `json:"duration_ms"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*r = Result(v.plain)
	r.Duration = time.Duration(v.DurationMS) * time.Millisecond
	return nil
}

// WriteTable prints the report for people: what was certified, one line per
// check (name, PASS/FAIL/n/a, duration, detail or reason), and the totals.
func (r *Report) WriteTable(w io.Writer) error {
	fmt.Fprintf(w, "plugin   %s\nmodel    %s\nmodem    %s\nservers  %s\n", r.Plugin, r.Model, r.Modem, r.Servers)
	if r.ContractVersion != "" {
		fmt.Fprintf(w, "contract %s\n", r.ContractVersion)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "CHECK\tRESULT\tTIME\tDETAIL")
	for _, res := range r.Results {
		took := "-"
		if res.Status != NotApplicable {
			took = res.Duration.Round(10 * time.Millisecond).String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", res.Name, statusWord(res.Status), took, oneLine(res.Detail))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	pass, fail, na := r.Counts()
	verdict := "PASSED"
	if fail > 0 {
		verdict = "FAILED"
	}
	_, err := fmt.Fprintf(w, "\n%s: %d passed, %d failed, %d not applicable\n", verdict, pass, fail, na)
	return err
}

func statusWord(s Status) string {
	switch s {
	case Pass:
		return "PASS"
	case Fail:
		return "FAIL"
	}
	return "n/a"
}

// oneLine folds a multi-line reason (errors.Join) onto one table row.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
