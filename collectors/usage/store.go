package usage

import (
	"context"
	"time"
)

// WriteResult says what a write did: rows new to the store, and rows whose
// key was already there and were ignored.
type WriteResult struct {
	Inserted   int
	Duplicates int
}

// Gap is a span of minutes [Start, End) that a source could not sample
// exactly, with the reason. What it did write for them is a lower bound.
type Gap struct {
	Source string
	Start  time.Time
	End    time.Time
	Reason string
}

// The reasons a gap is recorded for.
const (
	// GapNotObserved: the collector was not watching for part of the
	// minutes, so pods or volumes that ended then may be missing.
	GapNotObserved = "not-observed"
	// GapUsageUnavailable: the metrics API is served but gave no usage for
	// the minutes; requests were used instead.
	GapUsageUnavailable = "usage-unavailable"
	// GapTooOld: the minutes were further back than the catch-up window
	// and were not sampled at all.
	GapTooOld = "too-old"
)

// Watermark is how far a source has sampled: every minute in [Since,
// Through) is written.
type Watermark struct {
	Since   time.Time
	Through time.Time
}

// MinuteBatch is what a collector writes for a run of minutes, in one
// transaction: the samples, the gaps, and the new watermark.
type MinuteBatch struct {
	Source  string
	From    time.Time // the first minute of the batch; the watermark it continues
	Through time.Time // the new watermark
	Samples []Sample
	Gaps    []Gap
}

// Writer is how the collectors and the ingest API record usage.
type Writer interface {
	// Write stores samples under source, ignoring any whose key is
	// already stored. When it returns nil, every sample is stored.
	Write(ctx context.Context, source string, samples []Sample) (WriteResult, error)
	// WriteMinutes stores a collector's batch and advances its watermark
	// from b.From to b.Through atomically. It fails with CONFLICT when the
	// stored watermark is not b.From (another instance moved it), unless
	// no watermark is stored yet.
	WriteMinutes(ctx context.Context, b MinuteBatch) error
	// Watermark returns a source's watermark; ok is false when the source
	// has never written.
	Watermark(ctx context.Context, source string) (w Watermark, ok bool, err error)
}

// Namespaces maps Kubernetes namespace names to tenant namespace ids. The
// namespaces table is the source of truth for which namespaces are
// tenants.
type Namespaces interface {
	// TenantNamespaces returns every tenant namespace, whatever its state.
	TenantNamespaces(ctx context.Context) (map[string]int64, error)
	// NamespaceIDs returns the ids of those of names that are tenant
	// namespaces.
	NamespaceIDs(ctx context.Context, names []string) (map[string]int64, error)
}

// Hourly is one rollup row: revision 0 is an hour's total when it closed,
// a higher revision a correction to add to it.
type Hourly struct {
	NamespaceID int64
	Hour        time.Time
	Resource    string
	Class       string
	Revision    int
	Quantity    int64
	// Seq orders rollup rows by commit; read rows with a Seq above the
	// last one read.
	Seq int64
}

// Point is one value of a series: the quantity in [Start, Start+step).
type Point struct {
	Start    time.Time
	Quantity int64
}

// SeriesKey names one series.
type SeriesKey struct {
	Resource string
	Class    string
}

// Scope selects the namespaces whose usage is summed: one namespace, or
// every namespace of an org.
type Scope struct {
	NamespaceID int64
	OrgID       int64
}

// Reader is what billing and the usage API read.
type Reader interface {
	// ClosedThrough returns the end of the closed hours: every hour before
	// it has its revision 0 rollup. ok is false before the first hour
	// closes.
	ClosedThrough(ctx context.Context) (t time.Time, ok bool, err error)
	// HourlySince returns up to limit rollup rows with Seq > afterSeq, in
	// Seq order.
	HourlySince(ctx context.Context, afterSeq int64, limit int) ([]Hourly, error)
	// Series returns the usage of scope in [from, to) by granularity,
	// per resource and class; points with no usage are left out.
	Series(ctx context.Context, scope Scope, from, to time.Time, g Granularity) (map[SeriesKey][]Point, error)
	// Gaps returns the gaps that overlap [from, to).
	Gaps(ctx context.Context, from, to time.Time) ([]Gap, error)
}

// Maintainer is the upkeep of the store: partitions and rollups.
type Maintainer interface {
	// EnsurePartitions creates the partitions for the UTC days [from, to).
	EnsurePartitions(ctx context.Context, from, to time.Time) (created int, err error)
	// DropPartitionsBefore drops the minute partitions of days before day.
	DropPartitionsBefore(ctx context.Context, day time.Time) (dropped []string, err error)
	// CloseHours writes the revision 0 rollup of every hour from the
	// closed watermark up to before, oldest first, at most max hours, and
	// returns the new closed watermark.
	CloseHours(ctx context.Context, before time.Time, start time.Time, max int, now time.Time) (closed time.Time, err error)
	// Correct writes a correction revision for every (hour, namespace)
	// that late data touched, and returns how many rows it wrote. Touched
	// hours before notBefore are forgotten (their minutes may be gone).
	Correct(ctx context.Context, notBefore, now time.Time) (int, error)
}

// Store is the whole usage store.
type Store interface {
	Writer
	Namespaces
	Reader
	Maintainer
}
