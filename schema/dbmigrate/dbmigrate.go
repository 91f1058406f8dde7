package dbmigrate

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/golang-migrate/migrate/v4"
	migratepgx "github.com/golang-migrate/migrate/v4/database/pgx/v5"
	"github.com/golang-migrate/migrate/v4/source/iofs"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/tenantplane/tenantplane/schema"
)

// Table is the table in which the applied version is kept.
const Table = "schema_migrations"

// Migrator applies the embedded migrations to one database.
type Migrator struct {
	db  *sql.DB
	m   *migrate.Migrate
	log *slog.Logger
}

// Status is where a database stands against the embedded migrations.
type Status struct {
	// Current is the applied version, 0 when none is.
	Current uint
	// Dirty is true when a migration failed halfway and needs an operator.
	Dirty bool
	// Latest is the highest embedded version.
	Latest uint
	// Pending lists the embedded versions above Current, in order.
	Pending []uint
}

// New connects to databaseURL (a postgres:// URL or key=value string). The
// caller must Close the Migrator.
func New(databaseURL string, log *slog.Logger) (*Migrator, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg, err := pgx.ParseConfig(databaseURL)
	if err != nil {
		return nil, fmt.Errorf("parsing database url: %w", err)
	}
	db := stdlib.OpenDB(*cfg)
	drv, err := migratepgx.WithInstance(db, &migratepgx.Config{MigrationsTable: Table})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("opening migration driver: %w", err)
	}
	src, err := iofs.New(schema.Migrations, "migrations")
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("reading embedded migrations: %w", err)
	}
	m, err := migrate.NewWithInstance("iofs", src, "pgx5", drv)
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("preparing migrations: %w", err)
	}
	m.LockTimeout = 2 * time.Minute
	m.Log = logger{log}
	return &Migrator{db: db, m: m, log: log}, nil
}

// Close releases the database connections.
func (mg *Migrator) Close() error {
	srcErr, dbErr := mg.m.Close()
	return errors.Join(srcErr, dbErr, mg.db.Close())
}

// Up applies every pending migration. It is a no-op when none is pending.
func (mg *Migrator) Up(ctx context.Context) error {
	return mg.run(ctx, "up", mg.m.Up)
}

// Down reverts the given number of migrations, or all of them when steps is
// zero or less.
func (mg *Migrator) Down(ctx context.Context, steps int) error {
	if steps <= 0 {
		return mg.run(ctx, "down", mg.m.Down)
	}
	return mg.run(ctx, "down", func() error { return mg.m.Steps(-steps) })
}

func (mg *Migrator) run(ctx context.Context, what string, f func() error) error {
	stop := context.AfterFunc(ctx, func() {
		select {
		case mg.m.GracefulStop <- true:
		default:
		}
	})
	defer stop()
	err := f()
	if errors.Is(err, migrate.ErrNoChange) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("migrating %s: %w", what, err)
	}
	return ctx.Err()
}

// Status reports the applied version and what is pending.
func (mg *Migrator) Status(context.Context) (Status, error) {
	all, err := Versions()
	if err != nil {
		return Status{}, err
	}
	var st Status
	if len(all) > 0 {
		st.Latest = all[len(all)-1]
	}
	v, dirty, err := mg.m.Version()
	switch {
	case errors.Is(err, migrate.ErrNilVersion):
	case err != nil:
		return Status{}, fmt.Errorf("reading applied version: %w", err)
	default:
		st.Current, st.Dirty = v, dirty
	}
	for _, x := range all {
		if x > st.Current {
			st.Pending = append(st.Pending, x)
		}
	}
	return st, nil
}

// Versions lists the embedded migration versions in ascending order.
func Versions() ([]uint, error) {
	entries, err := fs.ReadDir(schema.Migrations, "migrations")
	if err != nil {
		return nil, fmt.Errorf("listing embedded migrations: %w", err)
	}
	var vs []uint
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".up.sql") {
			continue
		}
		num, _, ok := strings.Cut(name, "_")
		if !ok {
			return nil, fmt.Errorf("migration %q: name must be NNN_name.up.sql", name)
		}
		v, err := strconv.ParseUint(num, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("migration %q: version: %w", name, err)
		}
		vs = append(vs, uint(v))
	}
	slices.Sort(vs)
	return vs, nil
}

type logger struct{ log *slog.Logger }

func (l logger) Printf(format string, v ...any) {
	l.log.Info(strings.TrimSpace(fmt.Sprintf(format, v...)), "component", "migrate")
}

func (l logger) Verbose() bool { return false }
