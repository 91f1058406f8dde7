package billing

import "context"

// ObserveBalances makes r tell o, after each rating batch commits, of
// every org the batch charged, so that the debt lifecycle warns or
// suspends at once instead of at its next pass. Call it before the first
// run.
func (r *Rater) ObserveBalances(o BalanceObserver) { r.observer = o }

// charged tells the observer, once per org, of the orgs that lines
// charge. The batch of lines has committed.
func (r *Rater) charged(ctx context.Context, lines []ChargeLine) {
	if r.observer == nil {
		return
	}
	seen := make(map[int64]bool)
	for _, l := range lines {
		if l.Amount == 0 || seen[l.OrgID] {
			continue
		}
		seen[l.OrgID] = true
		r.observer.BalanceChanged(ctx, l.OrgID)
	}
}
