package server

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/tenantplane/tenantplane/schema/dbmigrate"
)

func newServeCommand() *cobra.Command {
	cfg := defaultConfig()
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the API, with health, readiness and metrics endpoints",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := applyEnv(cmd); err != nil {
				return err
			}
			if err := cfg.validate(); err != nil {
				return err
			}
			log := newLogger(cmd.ErrOrStderr(), cfg.LogLevel)
			l, err := net.Listen("tcp", cfg.HTTP.Listen)
			if err != nil {
				return fmt.Errorf("listening on %s: %w", cfg.HTTP.Listen, err)
			}
			return serve(cmd.Context(), cfg, log, l)
		},
	}
	cfg.bindFlags(cmd.Flags())
	return cmd
}

// newLogger returns the JSON logger every component writes to.
func newLogger(w io.Writer, level string) *slog.Logger {
	var lv slog.Level
	_ = lv.UnmarshalText([]byte(level))
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: lv}))
}

// app holds what serve wires together, so that tests and the dev command
// can build the same thing.
type app struct {
	cfg  Config
	log  *slog.Logger
	pool *pgxpool.Pool
	kube kubernetes.Interface
	http *httpServer
}

// serve runs the server on l until ctx is done.
func serve(ctx context.Context, cfg Config, log *slog.Logger, l net.Listener) error {
	a, err := newApp(ctx, cfg, log)
	if err != nil {
		_ = l.Close()
		return err
	}
	defer a.close()
	return a.http.run(ctx, l)
}

func newApp(ctx context.Context, cfg Config, log *slog.Logger) (*app, error) {
	if cfg.MigrateOnStart {
		if err := migrateUp(ctx, cfg.DatabaseURL, log); err != nil {
			return nil, err
		}
	}
	pool, err := pgxpool.New(ctx, cfg.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("connecting to postgres: %w", err)
	}
	restCfg, err := kubeRESTConfig(cfg.Kubeconfig)
	if err != nil {
		pool.Close()
		return nil, err
	}
	kube, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("building kubernetes client: %w", err)
	}
	a := &app{cfg: cfg, log: log, pool: pool, kube: kube}
	reg := newRegistry()
	a.http = newHTTPServer(cfg.HTTP, log, reg, []check{
		{name: "postgres", fn: pool.Ping},
		{name: "kubernetes", fn: kubeReady(kube)},
	})
	return a, nil
}

func (a *app) close() { a.pool.Close() }

// kubeRESTConfig loads a kubeconfig file, or the in-cluster configuration
// when path is empty.
func kubeRESTConfig(path string) (*rest.Config, error) {
	if path == "" {
		c, err := rest.InClusterConfig()
		if err != nil {
			return nil, &configError{"--kubeconfig (TENANTPLANE_KUBECONFIG)", "not set and not running in a cluster: " + err.Error()}
		}
		return c, nil
	}
	c, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return nil, &configError{"--kubeconfig (TENANTPLANE_KUBECONFIG)", err.Error()}
	}
	c.QPS, c.Burst = 200, 400
	return c, nil
}

// kubeReady asks the API server's own /readyz.
func kubeReady(kube kubernetes.Interface) func(context.Context) error {
	return func(ctx context.Context) error {
		body, err := kube.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err != nil {
			return fmt.Errorf("kube-apiserver /readyz: %w", err)
		}
		if string(body) != "ok" {
			return fmt.Errorf("kube-apiserver /readyz: %.200s", body)
		}
		return nil
	}
}

func migrateUp(ctx context.Context, dbURL string, log *slog.Logger) error {
	m, err := dbmigrate.New(dbURL, log)
	if err != nil {
		return err
	}
	defer func() { _ = m.Close() }()
	return m.Up(ctx)
}
