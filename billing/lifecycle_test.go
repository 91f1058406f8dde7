package billing_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tenantplane/tenantplane/billing"
)

const unit = billing.MicrosPerUnit

var tNow = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

func testLifecycleConfig() billing.LifecycleConfig {
	cfg := billing.DefaultLifecycleConfig()
	cfg.Thresholds = billing.DebtThresholds{Low: 10 * unit, Critical: 2 * unit}
	cfg.CurrencyThresholds = map[string]billing.DebtThresholds{"JPY": {Low: 1000 * unit, Critical: 200 * unit}}
	cfg.Grace = 24 * time.Hour
	return cfg
}

func at(h int) *time.Time {
	t := tNow.Add(time.Duration(h) * time.Hour)
	return &t
}

func TestDebtLevel(t *testing.T) {
	t.Parallel()
	th := billing.DebtThresholds{Low: 10 * unit, Critical: 2 * unit}
	for _, c := range []struct {
		usable int64
		want   billing.DebtState
	}{
		{10*unit + 1, billing.DebtNormal},
		{10 * unit, billing.DebtLowBalance},
		{2*unit + 1, billing.DebtLowBalance},
		{2 * unit, billing.DebtCritical},
		{1, billing.DebtCritical},
		{0, billing.DebtInDebt},
		{-5 * unit, billing.DebtInDebt},
	} {
		require.Equal(t, c.want, billing.DebtLevel(c.usable, th), "usable %d", c.usable)
	}
}

func TestNextDebtState(t *testing.T) {
	t.Parallel()
	cfg := testLifecycleConfig()
	type want struct {
		state     billing.DebtState
		events    []billing.DebtEvent
		debtSince *time.Time
		suspended *time.Time
	}
	st := func(s billing.DebtState, debtSince, suspendedAt *time.Time) billing.DebtStatus {
		return billing.DebtStatus{OrgID: 1, State: s, Since: tNow.Add(-48 * time.Hour), DebtSince: debtSince, SuspendedAt: suspendedAt}
	}
	cases := []struct {
		name     string
		from     billing.DebtStatus
		usable   int64
		currency string
		now      time.Time
		cfg      func(*billing.LifecycleConfig)
		want     want
	}{
		{"new org with money", billing.DebtStatus{OrgID: 1}, 50 * unit, "USD", tNow, nil,
			want{state: billing.DebtNormal}},
		{"new org already low", billing.DebtStatus{OrgID: 1}, 5 * unit, "USD", tNow, nil,
			want{state: billing.DebtLowBalance, events: []billing.DebtEvent{billing.DebtEventLowBalance}}},
		{"normal stays", st(billing.DebtNormal, nil, nil), 11 * unit, "USD", tNow, nil,
			want{state: billing.DebtNormal}},
		{"normal to low", st(billing.DebtNormal, nil, nil), 10 * unit, "USD", tNow, nil,
			want{state: billing.DebtLowBalance, events: []billing.DebtEvent{billing.DebtEventLowBalance}}},
		{"low to critical", st(billing.DebtLowBalance, nil, nil), 2 * unit, "USD", tNow, nil,
			want{state: billing.DebtCritical, events: []billing.DebtEvent{billing.DebtEventCritical}}},
		{"normal straight to critical", st(billing.DebtNormal, nil, nil), unit, "USD", tNow, nil,
			want{state: billing.DebtCritical, events: []billing.DebtEvent{billing.DebtEventCritical}}},
		{"critical to debt starts the grace period", st(billing.DebtCritical, nil, nil), 0, "USD", tNow, nil,
			want{state: billing.DebtInDebt, events: []billing.DebtEvent{billing.DebtEventDebt}, debtSince: at(0)}},
		{"debt inside grace stays", st(billing.DebtInDebt, at(-23), nil), -unit, "USD", tNow, nil,
			want{state: billing.DebtInDebt, debtSince: at(-23)}},
		{"debt at the end of grace is suspended", st(billing.DebtInDebt, at(-24), nil), -unit, "USD", tNow, nil,
			want{state: billing.DebtSuspended, events: []billing.DebtEvent{billing.DebtEventSuspended}, debtSince: at(-24), suspended: at(0)}},
		{"zero grace suspends at once", st(billing.DebtLowBalance, nil, nil), -unit, "USD", tNow,
			func(c *billing.LifecycleConfig) { c.Grace = 0 },
			want{state: billing.DebtSuspended, events: []billing.DebtEvent{billing.DebtEventDebt, billing.DebtEventSuspended},
				debtSince: at(0), suspended: at(0)}},
		{"debt paid inside grace recovers", st(billing.DebtInDebt, at(-3), nil), 50 * unit, "USD", tNow, nil,
			want{state: billing.DebtNormal, events: []billing.DebtEvent{billing.DebtEventRecovered}}},
		{"debt paid partly recovers to critical", st(billing.DebtInDebt, at(-3), nil), unit, "USD", tNow, nil,
			want{state: billing.DebtCritical, events: []billing.DebtEvent{billing.DebtEventRecovered}}},
		{"suspended stays while in debt", st(billing.DebtSuspended, at(-30), at(-6)), 0, "USD", tNow, nil,
			want{state: billing.DebtSuspended, debtSince: at(-30), suspended: at(-6)}},
		{"suspended resumes to low", st(billing.DebtSuspended, at(-30), at(-6)), 3 * unit, "USD", tNow, nil,
			want{state: billing.DebtLowBalance, events: []billing.DebtEvent{billing.DebtEventResumed}}},
		{"suspended resumes to normal", st(billing.DebtSuspended, at(-30), at(-6)), 100 * unit, "USD", tNow, nil,
			want{state: billing.DebtNormal, events: []billing.DebtEvent{billing.DebtEventResumed}}},
		{"suspended resumes on one micro", st(billing.DebtSuspended, at(-30), at(-6)), 1, "USD", tNow, nil,
			want{state: billing.DebtCritical, events: []billing.DebtEvent{billing.DebtEventResumed}}},
		{"critical back to low recovers", st(billing.DebtCritical, nil, nil), 5 * unit, "USD", tNow, nil,
			want{state: billing.DebtLowBalance, events: []billing.DebtEvent{billing.DebtEventRecovered}}},
		{"thresholds per currency", st(billing.DebtNormal, nil, nil), 500 * unit, "JPY", tNow, nil,
			want{state: billing.DebtLowBalance, events: []billing.DebtEvent{billing.DebtEventLowBalance}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			cfg := cfg
			if c.cfg != nil {
				c.cfg(&cfg)
			}
			next, steps := billing.NextDebtState(c.from, c.usable, c.currency, c.now, cfg)
			require.Equal(t, c.want.state, next.State)
			var events []billing.DebtEvent
			prev := c.from.State
			if prev == "" {
				prev = billing.DebtNormal
			}
			for _, s := range steps {
				events = append(events, s.Event)
				require.Equal(t, prev, s.From, "steps chain")
				require.NotEmpty(t, s.Cause)
				prev = s.To
			}
			require.Equal(t, c.want.events, events)
			require.Equal(t, c.want.debtSince, next.DebtSince)
			require.Equal(t, c.want.suspended, next.SuspendedAt)
			require.Equal(t, c.usable, next.Usable)
			require.Equal(t, c.now, next.EvaluatedAt)
			if len(steps) > 0 {
				require.Equal(t, c.now, next.Since)
			} else if c.from.State != "" {
				require.Equal(t, c.from.Since, next.Since)
			}
			// Deciding again at the same time and balance changes nothing.
			again, more := billing.NextDebtState(next, c.usable, c.currency, c.now, cfg)
			require.Empty(t, more)
			require.Equal(t, next, again)
		})
	}
}

func TestDeletionDue(t *testing.T) {
	t.Parallel()
	cfg := testLifecycleConfig()
	susp := billing.DebtStatus{State: billing.DebtSuspended, DebtSince: at(-100), SuspendedAt: at(-48)}
	require.False(t, billing.DeletionDue(susp, tNow, cfg), "deletion is off by default")
	cfg.DeleteWorkloadsAfter = 48 * time.Hour
	require.True(t, billing.DeletionDue(susp, tNow, cfg))
	require.False(t, billing.DeletionDue(susp, tNow.Add(-time.Second), cfg))
	done := susp
	done.WorkloadsDeletedAt = at(-1)
	require.False(t, billing.DeletionDue(done, tNow, cfg))
	require.False(t, billing.DeletionDue(billing.DebtStatus{State: billing.DebtInDebt, DebtSince: at(-100)}, tNow, cfg))
}

func TestForecastDebt(t *testing.T) {
	t.Parallel()
	cfg := testLifecycleConfig() // 24h grace
	dur := func(d time.Duration) *time.Duration { return &d }
	cases := []struct {
		name      string
		st        billing.DebtStatus
		usable    int64
		charged   int64
		burn      int64
		timeLeft  *time.Duration
		suspendAt *time.Time
	}{
		{"spends nothing", billing.DebtStatus{State: billing.DebtNormal}, 100 * unit, 0, 0, nil, nil},
		{"48 units at 24 a day", billing.DebtStatus{State: billing.DebtNormal}, 48 * unit, 24 * unit, unit,
			dur(72 * time.Hour), at(72)},
		{"rounds the burn half even", billing.DebtStatus{State: billing.DebtNormal}, unit, 36, 2,
			dur(time.Duration(unit*24*3600/36)*time.Second + 24*time.Hour), nil},
		{"in debt counts from debt", billing.DebtStatus{State: billing.DebtInDebt, DebtSince: at(-10)}, -unit, 24 * unit, unit,
			dur(14 * time.Hour), at(14)},
		{"in debt past grace is zero", billing.DebtStatus{State: billing.DebtInDebt, DebtSince: at(-30)}, -unit, 0, 0,
			dur(0), at(-6)},
		{"never billed has none", billing.DebtStatus{State: billing.DebtNormal}, 0, 0, 0, nil, nil},
		{"below zero, not yet seen in debt", billing.DebtStatus{State: billing.DebtCritical}, -unit, 24 * unit, unit,
			dur(24 * time.Hour), at(24)},
		{"suspended has none", billing.DebtStatus{State: billing.DebtSuspended, DebtSince: at(-30), SuspendedAt: at(-6)}, -unit, 24 * unit, unit, nil, nil},
	}
	for _, c := range cases {
		f := billing.ForecastDebt(c.st, c.usable, c.charged, tNow, cfg)
		require.Equal(t, c.burn, f.BurnPerHour, c.name)
		require.Equal(t, c.timeLeft, f.TimeLeft, c.name)
		if c.suspendAt != nil {
			require.Equal(t, c.suspendAt, f.SuspensionAt, c.name)
		}
		if c.timeLeft == nil {
			require.Nil(t, f.SuspensionAt, c.name)
		}
	}
}

func TestNextSpendStep(t *testing.T) {
	t.Parallel()
	lim := func(amount, spend int64, held bool) billing.SpendingLimit {
		return billing.SpendingLimit{Amount: amount, MonthSpend: spend, Held: held, Currency: "USD"}
	}
	cases := []struct {
		name   string
		l      billing.SpendingLimit
		exists bool
		place  bool
		event  billing.DebtEvent
	}{
		{"under the limit", lim(10*unit, 9*unit, false), true, false, ""},
		{"reaches the limit", lim(10*unit, 10*unit, false), true, true, billing.SpendEventLimitReached},
		{"already held", lim(10*unit, 12*unit, true), true, false, ""},
		{"limit raised", lim(20*unit, 12*unit, true), true, false, billing.SpendEventLimitLifted},
		{"new month", lim(10*unit, 0, true), true, false, billing.SpendEventLimitLifted},
		{"limit removed", lim(0, 0, true), false, false, billing.SpendEventLimitLifted},
		{"no limit, no hold", lim(0, 0, false), false, false, ""},
	}
	for _, c := range cases {
		s := billing.NextSpendStep(c.l, c.exists)
		if c.event == "" {
			require.Nil(t, s, c.name)
			continue
		}
		require.NotNil(t, s, c.name)
		require.Equal(t, c.event, s.Event, c.name)
		require.Equal(t, c.place, s.Place, c.name)
	}
}

func TestLifecycleConfigValidate(t *testing.T) {
	t.Parallel()
	require.NoError(t, billing.DefaultLifecycleConfig().Validate())
	for name, change := range map[string]func(*billing.LifecycleConfig){
		"low below critical": func(c *billing.LifecycleConfig) { c.Thresholds = billing.DebtThresholds{Low: 1, Critical: 2} },
		"critical zero":      func(c *billing.LifecycleConfig) { c.Thresholds.Critical = 0 },
		"bad currency": func(c *billing.LifecycleConfig) {
			c.CurrencyThresholds = map[string]billing.DebtThresholds{"eur": c.Thresholds}
		},
		"bad currency thresholds": func(c *billing.LifecycleConfig) {
			c.CurrencyThresholds = map[string]billing.DebtThresholds{"EUR": {Low: 1, Critical: 1}}
		},
		"negative grace":        func(c *billing.LifecycleConfig) { c.Grace = -time.Second },
		"short deletion period": func(c *billing.LifecycleConfig) { c.DeleteWorkloadsAfter = time.Minute },
		"no schedule":           func(c *billing.LifecycleConfig) { c.Schedule = "" },
		"no default currency":   func(c *billing.LifecycleConfig) { c.DefaultCurrency = "" },
		"zero batch":            func(c *billing.LifecycleConfig) { c.BatchSize = 0 },
		"webhook timeout":       func(c *billing.LifecycleConfig) { c.Webhook.Timeout = 0 },
		"webhook attempts":      func(c *billing.LifecycleConfig) { c.Webhook.MaxAttempts = 0 },
		"webhook backoff":       func(c *billing.LifecycleConfig) { c.Webhook.RetryMax = c.Webhook.RetryBase - 1 },
	} {
		cfg := billing.DefaultLifecycleConfig()
		change(&cfg)
		require.Error(t, cfg.Validate(), name)
	}
	cfg := billing.DefaultLifecycleConfig()
	cfg.Schedule = "every minute"
	_, err := billing.NewLifecycle(cfg, billing.LifecycleDeps{})
	require.ErrorContains(t, err, "schedule")
}
