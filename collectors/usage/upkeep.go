package usage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// UpkeepConfig says how long minute samples are kept and when hours close.
type UpkeepConfig struct {
	// Retention is how long minute partitions are kept, in whole days;
	// default 7 days, at least 2.
	Retention time.Duration
	// DaysAhead is how many days of partitions exist ahead of today;
	// default 3.
	DaysAhead int
	// LateWindow is how old data may be and still be accepted; corrections
	// are made for it. It must be shorter than Retention less a day;
	// default 24 hours.
	LateWindow time.Duration
	// CloseDelay is how long after its end an hour closes, at the earliest,
	// so meters that push have time to deliver; default 2 minutes.
	CloseDelay time.Duration
	// RequiredSources are the collectors whose watermark must have passed
	// an hour before it closes; default compute and storage.
	RequiredSources []string
	// Interval is how often Run does its work; default 30 seconds.
	Interval time.Duration
	// MaxHoursPerRun bounds how many hours one run closes; default 24.
	MaxHoursPerRun int
}

func (c *UpkeepConfig) withDefaults() error {
	if c.Retention == 0 {
		c.Retention = 7 * 24 * time.Hour
	}
	if c.DaysAhead == 0 {
		c.DaysAhead = 3
	}
	if c.LateWindow == 0 {
		c.LateWindow = 24 * time.Hour
	}
	if c.CloseDelay == 0 {
		c.CloseDelay = 2 * time.Minute
	}
	if c.RequiredSources == nil {
		c.RequiredSources = []string{SourceCompute, SourceStorage}
	}
	if c.Interval == 0 {
		c.Interval = 30 * time.Second
	}
	if c.MaxHoursPerRun == 0 {
		c.MaxHoursPerRun = 24
	}
	switch {
	case c.Retention < 48*time.Hour || c.Retention%(24*time.Hour) != 0:
		return errors.New("retention must be whole days, at least 2")
	case c.DaysAhead < 1:
		return errors.New("days ahead must be at least 1")
	case c.LateWindow < 0 || c.LateWindow > c.Retention-24*time.Hour:
		return errors.New("late window must be between 0 and retention less a day")
	case c.CloseDelay < 0 || c.Interval < 0 || c.MaxHoursPerRun < 0:
		return errors.New("close delay, interval and max hours must not be negative")
	}
	for _, s := range c.RequiredSources {
		if !ValidSource(s) {
			return fmt.Errorf("required source %q is not a source name", s)
		}
	}
	return nil
}

// Upkeep keeps the store in shape: partitions ahead, old minute partitions
// dropped, hours closed into rollups, and corrections for late data. Run it
// on one replica (the collectors' leader).
type Upkeep struct {
	store Store
	cfg   UpkeepConfig
	log   *slog.Logger
	now   func() time.Time
}

// NewUpkeep returns the upkeep of store.
func NewUpkeep(store Store, cfg UpkeepConfig, log *slog.Logger, now func() time.Time) (*Upkeep, error) {
	if store == nil || log == nil || now == nil {
		return nil, errors.New("usage upkeep: store, logger and clock are required")
	}
	if err := cfg.withDefaults(); err != nil {
		return nil, fmt.Errorf("usage upkeep: %w", err)
	}
	return &Upkeep{store: store, cfg: cfg, log: log, now: now}, nil
}

// Config returns the configuration with defaults filled in.
func (u *Upkeep) Config() UpkeepConfig { return u.cfg }

// Run does the upkeep every Interval until ctx is done. Errors are logged
// and retried at the next interval.
func (u *Upkeep) Run(ctx context.Context) error {
	t := time.NewTicker(u.cfg.Interval)
	defer t.Stop()
	for {
		if err := u.RunOnce(ctx); err != nil && ctx.Err() == nil {
			u.log.Error("usage upkeep", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// RunOnce does the upkeep once.
func (u *Upkeep) RunOnce(ctx context.Context) error {
	now := u.now().UTC()
	today := now.Truncate(24 * time.Hour)
	first := now.Add(-u.cfg.LateWindow).Truncate(24 * time.Hour)
	if _, err := u.store.EnsurePartitions(ctx, first, today.AddDate(0, 0, u.cfg.DaysAhead+1)); err != nil {
		return err
	}
	keepFrom := today.Add(-u.cfg.Retention + 24*time.Hour)
	dropped, err := u.store.DropPartitionsBefore(ctx, keepFrom)
	if err != nil {
		return err
	}
	if len(dropped) > 0 {
		u.log.Info("dropped usage partitions", "partitions", dropped)
	}
	if _, err := u.CloseHours(ctx); err != nil {
		return err
	}
	n, err := u.store.Correct(ctx, keepFrom, now)
	if err != nil {
		return err
	}
	if n > 0 {
		u.log.Info("usage corrections written", "rows", n)
	}
	return nil
}

// CloseHours closes every hour that is complete: ended CloseDelay ago and
// passed by the watermark of every required source. It returns the closed
// watermark, zero when nothing has closed yet.
func (u *Upkeep) CloseHours(ctx context.Context) (time.Time, error) {
	now := u.now().UTC()
	before := now.Add(-u.cfg.CloseDelay).Truncate(time.Hour)
	var start time.Time
	for _, s := range u.cfg.RequiredSources {
		w, ok, err := u.store.Watermark(ctx, s)
		if err != nil {
			return time.Time{}, err
		}
		if !ok {
			closed, _, err := u.store.ClosedThrough(ctx)
			return closed, err
		}
		if through := w.Through.Truncate(time.Hour); through.Before(before) {
			before = through
		}
		if since := w.Since.Truncate(time.Hour); start.IsZero() || since.Before(start) {
			start = since
		}
	}
	if start.IsZero() {
		start = before
	}
	return u.store.CloseHours(ctx, before, start, u.cfg.MaxHoursPerRun, now)
}
