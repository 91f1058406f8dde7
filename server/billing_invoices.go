package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/robfig/cron/v3"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/tenantplane/tenantplane/billing"
	"github.com/tenantplane/tenantplane/billing/billingstore"
	"github.com/tenantplane/tenantplane/tenancy"
)

// InvoicingConfig is when invoices are issued, the tax they carry, when
// expired credit is written off, and how often gift codes may be tried.
type InvoicingConfig struct {
	// AnchorDay is the day of the month each invoice period starts on
	// (1: calendar months, UTC).
	AnchorDay int
	// IssueDay is the day of the month a period that just ended is
	// invoiced on.
	IssueDay int
	// TaxRateBPS is the tax rate in basis points.
	TaxRateBPS int64
	// InvoiceSchedule and CreditExpirySchedule are cron specs (five
	// fields, UTC) of the invoice pass and the credit expiry pass; both
	// run on the leading replica only.
	InvoiceSchedule      string
	CreditExpirySchedule string
	// GiftCodeRedeemPerUser and GiftCodeRedeemPerOrg bound gift code
	// attempts per hour.
	GiftCodeRedeemPerUser int
	GiftCodeRedeemPerOrg  int
}

func defaultInvoicingConfig() InvoicingConfig {
	d := billing.DefaultInvoiceConfig()
	g := billing.DefaultGiftCodeConfig()
	return InvoicingConfig{
		AnchorDay: d.AnchorDay, IssueDay: d.IssueDay, TaxRateBPS: d.TaxRateBPS,
		InvoiceSchedule: "20 * * * *", CreditExpirySchedule: "*/10 * * * *",
		GiftCodeRedeemPerUser: g.RedeemPerUser.Max, GiftCodeRedeemPerOrg: g.RedeemPerOrg.Max,
	}
}

func (c *InvoicingConfig) bindFlags(fs *pflag.FlagSet) {
	fs.IntVar(&c.AnchorDay, "billing-invoice-anchor-day", c.AnchorDay, "day of the month (1-28, UTC) invoice periods start on; 1 for calendar months")
	fs.IntVar(&c.IssueDay, "billing-invoice-issue-day", c.IssueDay, "day of the month (after the anchor day, up to 28) a period that ended is invoiced on")
	fs.Int64Var(&c.TaxRateBPS, "billing-tax-rate-bps", c.TaxRateBPS, "tax rate on invoices in basis points (1950 is 19.50%)")
	fs.StringVar(&c.InvoiceSchedule, "billing-invoice-schedule", c.InvoiceSchedule, "cron spec (UTC) of the invoice pass")
	fs.StringVar(&c.CreditExpirySchedule, "billing-credit-expiry-schedule", c.CreditExpirySchedule, "cron spec (UTC) of the pass that writes off expired credit")
	fs.IntVar(&c.GiftCodeRedeemPerUser, "billing-giftcode-attempts-per-user", c.GiftCodeRedeemPerUser, "gift code redemption attempts per user per hour")
	fs.IntVar(&c.GiftCodeRedeemPerOrg, "billing-giftcode-attempts-per-org", c.GiftCodeRedeemPerOrg, "gift code redemption attempts per org per hour")
}

func (c *InvoicingConfig) invoiceConfig() billing.InvoiceConfig {
	return billing.InvoiceConfig{AnchorDay: c.AnchorDay, IssueDay: c.IssueDay, TaxRateBPS: c.TaxRateBPS}
}

func (c *InvoicingConfig) giftCodeConfig() billing.GiftCodeConfig {
	return billing.GiftCodeConfig{
		RedeemPerUser: tenancy.RateLimit{Max: c.GiftCodeRedeemPerUser, Window: time.Hour},
		RedeemPerOrg:  tenancy.RateLimit{Max: c.GiftCodeRedeemPerOrg, Window: time.Hour},
	}
}

func (c *InvoicingConfig) validate() error {
	if err := c.invoiceConfig().Validate(); err != nil {
		return &configError{"--billing-invoice-* / --billing-tax-rate-bps", err.Error()}
	}
	for _, s := range []struct{ flag, spec string }{
		{"--billing-invoice-schedule", c.InvoiceSchedule}, {"--billing-credit-expiry-schedule", c.CreditExpirySchedule},
	} {
		if _, err := cron.ParseStandard(s.spec); err != nil {
			return &configError{s.flag, err.Error()}
		}
	}
	if c.GiftCodeRedeemPerUser <= 0 || c.GiftCodeRedeemPerOrg <= 0 {
		return &configError{"--billing-giftcode-attempts-per-*", "must be positive"}
	}
	return nil
}

// invoicingParts is what the ledger and invoices contribute to the app.
type invoicingParts struct {
	store     *billingstore.Store
	giftCodes *billing.GiftCodes
	invoicer  *billing.Invoicer
	cfg       InvoicingConfig
	log       *slog.Logger
}

// newInvoicing builds the gift code service and the invoicer over store.
// hook, told of each postpaid bill, may be nil.
func newInvoicing(cfg InvoicingConfig, store *billingstore.Store, hook billing.InvoiceFinalized, observer billing.BalanceObserver, log *slog.Logger) (*invoicingParts, error) {
	p := &invoicingParts{store: store, cfg: cfg, log: log.With("component", "billing-invoices")}
	var err error
	if p.giftCodes, err = billing.NewGiftCodes(p.store, cfg.giftCodeConfig(), observer, log, clock); err != nil {
		return nil, err
	}
	if p.invoicer, err = billing.NewInvoicer(p.store, cfg.invoiceConfig(), hook, log, clock); err != nil {
		return nil, err
	}
	return p, nil
}

// jobs are the credit expiry pass and the invoice pass.
func (p *invoicingParts) jobs() []billing.Job {
	return []billing.Job{
		{Name: "credit-expiry", Schedule: p.cfg.CreditExpirySchedule, Run: func(ctx context.Context) error {
			n, err := p.store.ExpireCredits(ctx, clock())
			if n > 0 {
				p.log.Info("credit expired", "grants", n)
			}
			return err
		}},
		{Name: "invoices", Schedule: p.cfg.InvoiceSchedule, Run: func(ctx context.Context) error {
			res, err := p.invoicer.Run(ctx)
			if res.Periods > 0 || res.Finalized > 0 {
				p.log.Info("invoice pass", "periods", res.Periods, "finalized", res.Finalized)
			}
			return err
		}},
	}
}

func newBillingCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "billing", Short: "Check and maintain billing data"}
	var dbURL string
	verify := &cobra.Command{
		Use:   "verify",
		Short: "Check every balance against its ledger and every issued invoice against its lines; exit 1 on any mismatch",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := applyEnv(cmd); err != nil {
				return err
			}
			if dbURL == "" {
				return &configError{"--database-url (TENANTPLANE_DATABASE_URL)", "is required"}
			}
			pool, err := pgxpool.New(cmd.Context(), dbURL)
			if err != nil {
				return &configError{"--database-url (TENANTPLANE_DATABASE_URL)", err.Error()}
			}
			defer pool.Close()
			return verifyBilling(cmd.Context(), billingstore.New(pool, clock), cmd.OutOrStdout())
		},
	}
	verify.Flags().StringVar(&dbURL, "database-url", "", "PostgreSQL connection URL (also DATABASE_URL)")
	cmd.AddCommand(verify)
	return cmd
}

// errMismatches makes billing verify exit 1.
var errMismatches = errors.New("billing verify found mismatches")

// verifyBilling prints each balance that differs from its ledger and each
// issued invoice whose totals differ from its lines or its period's
// charges, and returns errMismatches when there is any.
func verifyBilling(ctx context.Context, s *billingstore.Store, out io.Writer) error {
	mm, err := s.Verify(ctx)
	if err != nil {
		return err
	}
	for _, m := range mm {
		if _, err := fmt.Fprintf(out, "org %d: balance row cash %s credit %s entries %d; ledger cash %s credit %s entries %d; grants %s\n",
			m.OrgID, billing.FormatMicros(m.CashRow), billing.FormatMicros(m.CreditRow), m.EntryCountRow,
			billing.FormatMicros(m.CashEntries), billing.FormatMicros(m.CreditEntries), m.Entries,
			billing.FormatMicros(m.CreditGrants)); err != nil {
			return err
		}
	}
	sums, err := s.InvoiceSums(ctx)
	if err != nil {
		return err
	}
	bad := 0
	for _, v := range sums {
		for _, p := range v.Problems() {
			bad++
			if _, err := fmt.Fprintf(out, "invoice %d (INV-%06d, org %d): %s\n", v.InvoiceID, v.Number, v.OrgID, p); err != nil {
				return err
			}
		}
	}
	if len(mm) > 0 || bad > 0 {
		return fmt.Errorf("%w: %d balances, %d invoice problems", errMismatches, len(mm), bad)
	}
	_, err = fmt.Fprintf(out, "ok: every balance equals its ledger; %d issued invoices equal their lines and charges\n", len(sums))
	return err
}
