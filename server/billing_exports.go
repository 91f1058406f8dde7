package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/tenantplane/tenantplane/billing/billingstore"
	"github.com/tenantplane/tenantplane/billing/export"
	"github.com/tenantplane/tenantplane/tenancy"
)

// ExportConfig is how billing exports run (--export-* flags).
type ExportConfig struct {
	// MaxRange bounds the time range of one export.
	MaxRange time.Duration
	// BufferBytes is the write buffer between Postgres and the client.
	BufferBytes int
	// GzipLevel is the compression level of gzip output, 1 to 9.
	GzipLevel int
}

func defaultExportConfig() ExportConfig {
	d := export.DefaultConfig()
	return ExportConfig{MaxRange: d.MaxRange, BufferBytes: d.BufferBytes, GzipLevel: d.GzipLevel}
}

func (c *ExportConfig) bindFlags(fs *pflag.FlagSet) {
	fs.DurationVar(&c.MaxRange, "export-max-range", c.MaxRange, "longest time range one billing export may cover")
	fs.IntVar(&c.BufferBytes, "export-buffer-bytes", c.BufferBytes, "write buffer of a billing export, in bytes")
	fs.IntVar(&c.GzipLevel, "export-gzip-level", c.GzipLevel, "gzip level of compressed billing exports, 1 (fastest) to 9")
}

func (c *ExportConfig) exportConfig() (export.Config, error) {
	cfg := export.DefaultConfig()
	cfg.MaxRange, cfg.BufferBytes, cfg.GzipLevel = c.MaxRange, c.BufferBytes, c.GzipLevel
	cfg.Kinds = billingstore.ExportKinds()
	if err := cfg.Validate(); err != nil {
		return cfg, &configError{"--export-*", err.Error()}
	}
	return cfg, nil
}

func (c *ExportConfig) validate() error {
	_, err := c.exportConfig()
	return err
}

// newExporter builds the exporter over store.
func newExporter(cfg ExportConfig, store *billingstore.Store, log *slog.Logger) (*export.Exporter, error) {
	ecfg, err := cfg.exportConfig()
	if err != nil {
		return nil, err
	}
	return export.New(ecfg, store, log, clock)
}

// mountExports serves GET /admin/exports/{kind} for platform admins.
func (a *app) mountExports() error {
	exp, err := newExporter(a.cfg.Export, a.billingStore, a.log)
	if err != nil {
		return err
	}
	h, err := export.NewHandler(exp, a.tenancy, a.authz, a.cfg.HTTP.WriteTimeout, a.cfg.HTTP.proxies, a.log)
	if err != nil {
		return err
	}
	a.http.handle("GET /admin/exports/{kind}", h)
	return nil
}

// newExportCommand is `tenantplane export KIND`: the HTTP export from
// the command line, for operators with database access. It is recorded
// in the audit log as system:cli.
func newExportCommand() *cobra.Command {
	var dbURL, output string
	var p export.Params
	cfg := defaultExportConfig()
	cmd := &cobra.Command{
		Use:   "export {usage|charges|invoices|ledger|balances}",
		Short: "Export billing data as CSV or JSON Lines from one consistent snapshot",
		Long: `Export billing data as CSV (RFC 4180, header row) or JSON Lines, streamed
from one consistent snapshot of the database and recorded in the audit log.
Amounts are decimal currency units, times RFC 3339 in UTC. usage, charges,
invoices and ledger need --from and --to.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := applyEnv(cmd); err != nil {
				return err
			}
			if dbURL == "" {
				return &configError{"--database-url (TENANTPLANE_DATABASE_URL)", "is required"}
			}
			ctx := cmd.Context()
			pool, err := pgxpool.New(ctx, dbURL)
			if err != nil {
				return &configError{"--database-url (TENANTPLANE_DATABASE_URL)", err.Error()}
			}
			defer pool.Close()
			exp, err := newExporter(cfg, billingstore.New(pool, clock), newLogger(io.Discard, "error"))
			if err != nil {
				return err
			}
			q, err := exp.Parse(args[0], p)
			if err != nil {
				return err
			}
			n, err := runExport(ctx, exp, q, output, cmd.OutOrStdout())
			if err != nil {
				return err
			}
			_, _ = fmt.Fprintf(cmd.ErrOrStderr(), "exported %d %s rows\n", n, q.Kind)
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&dbURL, "database-url", "", "PostgreSQL connection URL (also DATABASE_URL)")
	fs.StringVar(&p.From, "from", "", "start of the time range, RFC 3339 or a date (inclusive)")
	fs.StringVar(&p.To, "to", "", "end of the time range, RFC 3339 or a date (exclusive)")
	fs.StringVar(&p.Org, "org", "", "only this org's rows (ID)")
	fs.StringVar(&p.Namespace, "namespace", "", "only this namespace's rows (ID; usage and charges)")
	fs.StringVar(&p.Resource, "resource", "", "only this resource's rows, e.g. cpu (usage and charges)")
	fs.StringVar(&p.Format, "format", "csv", "csv or jsonl")
	fs.BoolVar(&p.Gzip, "gzip", false, "compress the output with gzip")
	fs.StringVarP(&output, "output", "o", "", "file to write; standard output when empty. Written under a temporary name and renamed when complete")
	cfg.bindFlags(fs)
	return cmd
}

// runExport writes the export to path, or to stdout when path is empty.
// A file appears under its name only once the export is complete.
func runExport(ctx context.Context, exp *export.Exporter, q export.Query, path string, stdout io.Writer) (int64, error) {
	by := tenancy.Actor{System: "cli"}
	if path == "" || path == "-" {
		return exp.Run(ctx, q, by, stdout)
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".partial-*")
	if err != nil {
		return 0, fmt.Errorf("creating output: %w", err)
	}
	n, err := exp.Run(ctx, q, by, f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		return n, errors.Join(err, os.Remove(f.Name()))
	}
	return n, nil
}
