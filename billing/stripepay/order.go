package stripepay

import "time"

// statusRank orders the states an object may reach, for events Stripe
// stamps with the same second: a final state outranks a failure, which
// outranks a pending one.
var statusRank = map[string]int{
	"pending":        0,
	"open":           0,
	"failed":         1,
	"payment_failed": 1,
	"succeeded":      2,
	"paid":           2,
	"void":           2,
	"refunded":       2,
	"disputed":       2,
}

// supersedes reports whether an event created at created that would put
// an object in status is newer than the state prev holds, so that it may
// overwrite it. Older events never overwrite newer state; of two events of
// the same second the higher-ranked state wins, and a repeat of the same
// state is newer so that it may be recorded again harmlessly.
func supersedes(prev ObjectState, created time.Time, status string) bool {
	switch {
	case !prev.Exists:
		return true
	case created.After(prev.EventCreated):
		return true
	case created.Before(prev.EventCreated):
		return false
	}
	return statusRank[status] >= statusRank[prev.Status]
}
