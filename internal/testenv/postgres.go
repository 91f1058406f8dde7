package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenantplane/tenantplane/schema/dbmigrate"
)

// PostgresCluster is a throwaway PostgreSQL cluster on loopback: its data,
// socket and log live in one temporary folder that Stop removes.
type PostgresCluster struct {
	// Port is the TCP port on 127.0.0.1.
	Port int
	dir  string
	bin  string
	asPG bool                // run the server programs as the postgres user (we are root)
	cred *syscall.Credential // the postgres user's, when asPG
	proc *process            // the postmaster
	once sync.Once
}

// PostgresBinDir finds the PostgreSQL server programs: $TENANTPLANE_PG_BIN,
// else the newest /usr/lib/postgresql/*/bin that has initdb.
func PostgresBinDir() (string, error) {
	if d := os.Getenv("TENANTPLANE_PG_BIN"); d != "" {
		return d, nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return pgMajor(dirs[i]) > pgMajor(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	return "", errors.New("no PostgreSQL server found under /usr/lib/postgresql/*/bin (apt-get install postgresql)")
}

func pgMajor(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

// StartPostgres creates and starts a new cluster: initdb without fsync, C
// locale, trust authentication on loopback only. It takes about a second.
func StartPostgres(ctx context.Context) (*PostgresCluster, error) {
	bin, err := PostgresBinDir()
	if err != nil {
		return nil, err
	}
	// A peer folder: a test binary that died leaves it, and the next one
	// removes it.
	dir, err := makePeerDir("tenantplane-pg-")
	if err != nil {
		return nil, fmt.Errorf("creating postgres folder: %w", err)
	}
	c := &PostgresCluster{dir: dir, bin: bin, asPG: os.Geteuid() == 0}
	if c.asPG {
		// initdb refuses to run as root: hand the folder to postgres.
		u, err := user.Lookup("postgres")
		if err != nil {
			_ = os.RemoveAll(dir)
			return nil, fmt.Errorf("running as root needs the postgres user: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		c.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chmod(dir, 0o700); err != nil {
			_ = os.RemoveAll(dir)
			return nil, fmt.Errorf("preparing postgres folder: %w", err)
		}
		if err := os.Chown(dir, uid, gid); err != nil {
			_ = os.RemoveAll(dir)
			return nil, fmt.Errorf("preparing postgres folder: %w", err)
		}
	}
	if err := c.start(ctx); err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

func (c *PostgresCluster) start(ctx context.Context) error {
	data := filepath.Join(c.dir, "data")
	if err := c.run(ctx, "initdb", "-D", data, "-U", "postgres", "-A", "trust",
		"-E", "UTF8", "--locale=C", "-N"); err != nil {
		return err
	}
	// The postmaster runs as a child of this process, not daemonized by
	// pg_ctl, so that Linux kills it (Pdeathsig) when a test binary dies
	// without stopping it: killed by a timeout, or by a closed pipe.
	var lastErr error
	for range 5 { // a free port can be taken between finding it and binding it
		ports, err := freePorts(1)
		if err != nil {
			return err
		}
		port := ports[0]
		p, err := startProcessAs("postgres", filepath.Join(c.bin, "postgres"), []string{
			"-D", data,
			"-p", strconv.Itoa(port),
			"-k", c.dir,
			"-c", "listen_addresses=127.0.0.1",
			"-c", "fsync=off",
			"-c", "synchronous_commit=off",
			"-c", "full_page_writes=off",
			"-c", "max_connections=500",
			"-c", "shared_buffers=128MB",
			"-c", "timezone=UTC",
		}, c.dir, nil, nil, c.cred)
		if err != nil {
			return err
		}
		c.proc, c.Port = p, port
		lastErr = poll(ctx, "postgres", 20*time.Millisecond, []*process{p}, func(ctx context.Context) (bool, error) {
			conn, err := pgx.Connect(ctx, c.URL("postgres"))
			if err != nil {
				return false, err
			}
			return true, conn.Close(ctx)
		})
		if lastErr == nil {
			return nil
		}
		c.stopServer()
		if !addrInUse(p) {
			break
		}
	}
	return fmt.Errorf("starting postgres: %w", lastErr)
}

// stopServer shuts the postmaster down at once (SIGQUIT, as pg_ctl's
// immediate mode), and kills its process group if it does not go.
func (c *PostgresCluster) stopServer() {
	p := c.proc
	if p == nil {
		return
	}
	c.proc, c.Port = nil, 0
	if !p.exited() {
		_ = syscall.Kill(p.cmd.Process.Pid, syscall.SIGQUIT)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
		}
	}
	p.stop(0)
}

func (c *PostgresCluster) run(ctx context.Context, prog string, args ...string) error {
	path := filepath.Join(c.bin, prog)
	var cmd *exec.Cmd
	if c.asPG {
		cmd = exec.CommandContext(ctx, "runuser", append([]string{"-u", "postgres", "--", path}, args...)...)
	} else {
		cmd = exec.CommandContext(ctx, path, args...)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w: %s\nlast lines of postgres.log:\n%s", prog, err,
			strings.TrimSpace(out.String()), tail(filepath.Join(c.dir, "postgres.log"), 30))
	}
	return nil
}

// PID is the postmaster's process id; 0 once stopped.
func (c *PostgresCluster) PID() int {
	if c.proc == nil {
		return 0
	}
	return c.proc.cmd.Process.Pid
}

// Stop shuts the cluster down at once and removes its folder.
func (c *PostgresCluster) Stop() {
	c.once.Do(func() {
		c.stopServer()
		_ = os.RemoveAll(c.dir)
	})
}

// URL is the connection URL of database db as the postgres superuser.
func (c *PostgresCluster) URL(db string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.User("postgres"),
		Host:     net.JoinHostPort("127.0.0.1", strconv.Itoa(c.Port)),
		Path:     "/" + db,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// CreateDatabase creates database name, cloned from template when it is not
// empty.
func (c *PostgresCluster) CreateDatabase(ctx context.Context, name, template string) error {
	conn, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		return fmt.Errorf("connecting to postgres: %w", err)
	}
	defer func() { _ = conn.Close(context.Background()) }()
	q := "CREATE DATABASE " + pgx.Identifier{name}.Sanitize()
	if template != "" {
		q += " TEMPLATE " + pgx.Identifier{template}.Sanitize()
	}
	if _, err := conn.Exec(ctx, q); err != nil {
		return fmt.Errorf("creating database %s: %w", name, err)
	}
	return nil
}

// DB is a database of its own for one test, migrated to the latest schema.
type DB struct {
	// URL connects to this database as the superuser.
	URL string
	// Name is the database's name.
	Name string
	// Pool is a connection pool to it, closed when the test ends.
	Pool *pgxpool.Pool
	// Cluster is the shared cluster the database lives in.
	Cluster *PostgresCluster
}

var (
	pgOnce     sync.Once
	pgShared   *PostgresCluster
	pgErr      error
	pgDBSerial atomic.Int64
)

// templateDB is the migrated database that each test's database is cloned
// from, so a test never waits for migrations.
const templateDB = "tenantplane_template"

// SharedPostgres returns the cluster shared by every test of this test
// binary, started (with a migrated template database) on first use.
func SharedPostgres(t testing.TB) *PostgresCluster {
	t.Helper()
	pgOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		c, err := StartPostgres(ctx)
		if err != nil {
			pgErr = err
			return
		}
		onStop(c.Stop)
		if err := c.CreateDatabase(ctx, templateDB, ""); err != nil {
			pgErr = err
			return
		}
		if err := migrateUp(ctx, c.URL(templateDB)); err != nil {
			pgErr = err
			return
		}
		pgShared = c
	})
	if pgErr != nil {
		peerFailed(t, "postgres", "tools", pgErr)
	}
	return pgShared
}

func migrateUp(ctx context.Context, dbURL string) error {
	m, err := dbmigrate.New(dbURL, nil)
	if err != nil {
		return err
	}
	defer func() { _ = m.Close() }()
	return m.Up(ctx)
}

// Postgres gives the test a database of its own, cloned from the migrated
// template, with a pool that is closed when the test ends. Tests that call
// it may run in parallel: they never see each other's rows.
func Postgres(t testing.TB) *DB {
	t.Helper()
	c := SharedPostgres(t)
	return newDB(t, c, templateDB)
}

// EmptyPostgres gives the test an empty database with no migrations applied.
func EmptyPostgres(t testing.TB) *DB {
	t.Helper()
	c := SharedPostgres(t)
	return newDB(t, c, "")
}

func newDB(t testing.TB, c *PostgresCluster, template string) *DB {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	name := fmt.Sprintf("t%d_%s", pgDBSerial.Add(1), sanitizeName(t.Name()))
	if err := c.CreateDatabase(ctx, name, template); err != nil {
		t.Fatalf("creating test database: %v", err)
	}
	db := &DB{URL: c.URL(name), Name: name, Cluster: c}
	pool, err := pgxpool.New(ctx, db.URL)
	if err != nil {
		t.Fatalf("connecting to test database: %v", err)
	}
	db.Pool = pool
	t.Cleanup(pool.Close)
	return db
}

func sanitizeName(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
		if b.Len() >= 40 { // identifiers are at most 63 bytes
			break
		}
	}
	return b.String()
}
