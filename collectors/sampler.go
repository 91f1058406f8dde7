package collectors

import (
	"context"
	"fmt"
	"time"

	"github.com/tenantplane/tenantplane/collectors/usage"
	"github.com/tenantplane/tenantplane/internal/errcode"
)

// meter is one kind of usage that is sampled per minute.
type meter interface {
	source() string
	// observedSince is when the meter's informer had listed everything:
	// from then on it has seen every end. Zero until then.
	observedSince() time.Time
	// sample returns the samples of minute m for the tenant namespaces,
	// and the reasons the minute is not exact.
	sample(m time.Time, tenants map[string]int64) ([]usage.Sample, []string)
	// prune forgets what ended before t.
	prune(t time.Time)
}

// sampler writes a meter's minutes in order, from the persisted watermark:
// whoever leads continues exactly where the last writer stopped.
type sampler struct {
	m       meter
	store   usage.Writer
	cfg     *Config
	metrics *metrics
	// next is the first minute not yet written; zero until read from the
	// store.
	next time.Time
}

// sampleDue writes every minute that is complete (ended SettleDelay ago)
// and not yet written, given the tenant namespaces.
func (s *sampler) sampleDue(ctx context.Context, now time.Time, tenants func(context.Context) (map[string]int64, error)) error {
	src := s.m.source()
	observed := s.m.observedSince()
	if observed.IsZero() {
		return nil // not synced: nothing can be sampled yet
	}
	if s.next.IsZero() {
		w, ok, err := s.store.Watermark(ctx, src)
		if err != nil {
			return err
		}
		if ok {
			s.next = w.Through
		} else {
			// The first start ever: from the first whole minute observed.
			s.next = ceilMinute(observed)
		}
	}
	due := now.Add(-s.cfg.SettleDelay).UTC().Truncate(time.Minute)
	if !s.next.Before(due) {
		return nil
	}
	var ns map[string]int64
	for s.next.Before(due) {
		b := usage.MinuteBatch{Source: src, From: s.next}
		oldest := due.Add(-s.cfg.MaxCatchUp)
		if s.next.Before(oldest) {
			// Too far back to sample: recorded as one gap, skipped.
			b.Through = oldest
			b.Gaps = []usage.Gap{{Source: src, Start: s.next, End: oldest, Reason: usage.GapTooOld}}
		} else {
			if ns == nil {
				var err error
				if ns, err = tenants(ctx); err != nil {
					return fmt.Errorf("reading tenant namespaces: %w", err)
				}
			}
			b.Through = s.next
			for b.Through.Before(due) && b.Through.Sub(s.next) < time.Duration(s.cfg.BatchMinutes)*time.Minute {
				samples, reasons := s.m.sample(b.Through, ns)
				b.Samples = append(b.Samples, samples...)
				for _, r := range reasons {
					b.Gaps = addGap(b.Gaps, src, b.Through, r)
				}
				b.Through = b.Through.Add(time.Minute)
			}
		}
		if err := s.store.WriteMinutes(ctx, b); err != nil {
			if errcode.Of(err) == errcode.Conflict {
				// Another instance wrote these minutes: read where it
				// stopped and go on from there next time.
				s.next = time.Time{}
				return nil
			}
			return err
		}
		s.metrics.written(src, b)
		s.next = b.Through
	}
	s.metrics.watermark(src, s.next)
	s.m.prune(s.next.Add(-s.cfg.SettleDelay - time.Minute))
	return nil
}

// addGap extends the last gap of the same reason that ends at m, or adds
// a gap for minute m.
func addGap(gaps []usage.Gap, src string, m time.Time, reason string) []usage.Gap {
	for i := range gaps {
		if gaps[i].Reason == reason && gaps[i].End.Equal(m) {
			gaps[i].End = m.Add(time.Minute)
			return gaps
		}
	}
	return append(gaps, usage.Gap{Source: src, Start: m, End: m.Add(time.Minute), Reason: reason})
}

// ceilMinute returns the first whole minute at or after t.
func ceilMinute(t time.Time) time.Time {
	m := t.UTC().Truncate(time.Minute)
	if m.Before(t) {
		m = m.Add(time.Minute)
	}
	return m
}
