package input

import "testing"

// Stats.Add sums every count, reason by reason, whichever reasons each
// side has.
func TestStatsAddSumsReasonByReason(t *testing.T) {
	var a, b counters
	a.accepted.Add(3)
	a.reject(ReasonBadReading, 2)
	b.reject(ReasonBadReading, 0) // counts as one
	b.reject(ReasonSpoolFull, 5)
	sum := a.snapshot().Add(b.snapshot()).Add(Stats{})
	if sum.Accepted != 3 || sum.Rejected != 3 || sum.Failed != 5 || sum.ByReason[ReasonBadReading] != 3 || sum.ByReason[ReasonSpoolFull] != 5 || len(sum.ByReason) != len(reasons) {
		t.Errorf("sum = %+v", sum)
	}
}
