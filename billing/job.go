package billing

import "context"

// Job is a task billing runs on a schedule. The server runs every Job on
// one scheduler, on the replica that leads, never two runs of one Job at
// once.
type Job struct {
	// Name labels the job in logs and metrics, e.g. "rating".
	Name string
	// Schedule is a cron spec, UTC: five fields or a descriptor such as
	// "@every 5s".
	Schedule string
	// AtStart also runs the job as soon as a replica starts leading, so
	// that a new leader catches up at once.
	AtStart bool
	// Run does the work once; its context ends when leadership is lost or
	// the server stops.
	Run func(context.Context) error
}
