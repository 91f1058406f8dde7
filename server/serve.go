package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/tenantplane/tenantplane/billing"
	"github.com/tenantplane/tenantplane/billing/billingstore"
	"github.com/tenantplane/tenantplane/billing/stripepay"
	"github.com/tenantplane/tenantplane/graph"
	"github.com/tenantplane/tenantplane/internal/leader"
	"github.com/tenantplane/tenantplane/internal/pgstore"
	"github.com/tenantplane/tenantplane/internal/reqmeta"
	"github.com/tenantplane/tenantplane/schema/dbmigrate"
	"github.com/tenantplane/tenantplane/tenancy"
	"github.com/tenantplane/tenantplane/tenancy/authz"
	"github.com/tenantplane/tenantplane/tenancy/authz/authzstore"
	"github.com/tenantplane/tenantplane/tenancy/mail"
	"github.com/tenantplane/tenantplane/tenancy/mail/smtp"
	"github.com/tenantplane/tenantplane/tenancy/oidc"
	"github.com/tenantplane/tenantplane/tenancy/tenancystore"
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
			cfg.Runtime.apply(log)
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

// clock is the one source of the current time, in UTC.
func clock() time.Time { return time.Now().UTC() }

// app is everything serve wires together, so that tests and the dev
// command build exactly the same thing.
type app struct {
	cfg       Config
	log       *slog.Logger
	pool      *pgxpool.Pool
	kube      kubernetes.Interface
	tenancy   *tenancy.Service
	authz     *authz.Authorizer
	isolation *isolationParts
	metering  *meteringParts
	// billingStore is the one billing store every part of billing uses.
	billingStore *billingstore.Store
	invoicing    *invoicingParts
	lifecycle    *billing.Lifecycle
	// stripe takes payments; nil when payments are off. It is also the
	// billing.InvoiceFinalized hook of the invoice run.
	stripe *stripepay.Service
	rating *ratingParts
	http   *httpServer
	// background runs until ctx is done, next to the HTTP server.
	background []func(context.Context) error
}

// serve runs the server on l until ctx is done.
func serve(ctx context.Context, cfg Config, log *slog.Logger, l net.Listener) error {
	a, err := newApp(ctx, cfg, log)
	if err != nil {
		_ = l.Close()
		return err
	}
	defer a.close()
	return a.run(ctx, l)
}

func newApp(ctx context.Context, cfg Config, log *slog.Logger) (_ *app, err error) {
	if cfg.MigrateOnStart {
		if err := migrateUp(ctx, cfg.DatabaseURL, log); err != nil {
			return nil, err
		}
	}
	poolCfg, err := pgxpool.ParseConfig(cfg.DatabaseURL)
	if err != nil {
		return nil, &configError{"--database-url (TENANTPLANE_DATABASE_URL)", err.Error()}
	}
	// Two connections are the listeners' for good: authorization's and
	// the token cache's.
	poolCfg.MaxConns = max(poolCfg.MaxConns, pgstore.QueryConns) + 2
	pool, err := pgxpool.NewWithConfig(ctx, poolCfg)
	if err != nil {
		return nil, fmt.Errorf("connecting to postgres: %w", err)
	}
	a := &app{cfg: cfg, log: log, pool: pool}
	defer func() {
		if err != nil {
			a.close()
		}
	}()

	restCfg, err := kubeRESTConfig(cfg.Kubeconfig)
	if err != nil {
		return nil, err
	}
	if a.kube, err = kubernetes.NewForConfig(restCfg); err != nil {
		return nil, fmt.Errorf("building kubernetes client: %w", err)
	}

	store := tenancystore.New(pool)
	tcfg, err := cfg.Identity.tenancyConfig()
	if err != nil {
		return nil, err
	}
	if a.tenancy, err = tenancy.New(store, tcfg, log, clock); err != nil {
		return nil, err
	}
	mailer, err := newMailer(cfg.Identity, log)
	if err != nil {
		return nil, err
	}
	sender, err := tenancy.NewSender(store, mailer, tenancy.DefaultSenderConfig(), log, clock)
	if err != nil {
		return nil, err
	}

	adapter, err := authzstore.NewAdapter(pool)
	if err != nil {
		return nil, err
	}
	if a.authz, err = authz.New(ctx, authz.Config{Adapter: adapter, Logger: log}); err != nil {
		return nil, err
	}
	listener, err := authzstore.NewListener(authzstore.ListenerConfig{Pool: pool, Enforcer: a.authz, Logger: log})
	if err != nil {
		return nil, err
	}

	reg := newRegistry()
	if a.isolation, err = newIsolation(cfg.Isolation, restCfg, a.kube, a, reg); err != nil {
		return nil, err
	}
	if a.metering, err = newMetering(ctx, cfg, restCfg, a.kube, a, reg); err != nil {
		return nil, err
	}
	a.billingStore = billingstore.New(pool, clock)
	if a.lifecycle, err = newLifecycle(cfg.BillingLifecycle, a, a.billingStore, clock, reg); err != nil {
		return nil, err
	}

	// Payments and gift codes tell the lifecycle at once when they move a
	// balance, so a paid-up org resumes without waiting for its next pass;
	// charges are seen by that pass.
	if a.stripe, err = newStripe(cfg, a, a.billingStore, a.lifecycle, reg); err != nil {
		return nil, err
	}
	var payments graph.Payments
	var pushInvoice billing.InvoiceFinalized
	if a.stripe != nil {
		payments, pushInvoice = a.stripe, a.stripe
	}
	if a.invoicing, err = newInvoicing(cfg.Invoicing, a.billingStore, pushInvoice, a.lifecycle, log); err != nil {
		return nil, err
	}
	if a.rating, err = newRating(cfg.BillingRating, a.billingStore, log); err != nil {
		return nil, err
	}
	billingAdmin, err := billing.NewAdmin(a.billingStore, clock)
	if err != nil {
		return nil, err
	}
	// Every billing job runs on one scheduler, on the replica that holds
	// the billing Lease.
	billingJobs := slices.Concat(a.rating.jobs(), a.invoicing.jobs(), a.lifecycle.Jobs())
	if a.stripe != nil {
		billingJobs = append(billingJobs, a.stripe.Jobs()...)
	}
	billingSchedule, err := newBillingSchedule(log, reg, billingJobs...)
	if err != nil {
		return nil, err
	}
	gql, err := graph.NewHandler(graph.Config{
		Dev:            cfg.Dev,
		Introspection:  cfg.Dev || cfg.GraphQL.Introspection,
		MaxDepth:       cfg.GraphQL.MaxDepth,
		MaxComplexity:  cfg.GraphQL.MaxComplexity,
		TrustedProxies: cfg.HTTP.proxies,
	}, graph.Deps{
		Tenancy: a.tenancy, Authorizer: a.authz,
		Kubeconfigs: a.isolation.kubeconfigs, Suspender: a.isolation.suspension,
		Hosts: a.isolation.hosts, Usage: a.metering.queries,
		Ledger: a.billingStore, GiftCodes: a.invoicing.giftCodes, Debt: a.lifecycle, Payments: payments,
		Pricing: a.rating.pricing, Admin: billingAdmin,
		Logger: log, Clock: clock,
	})
	if err != nil {
		return nil, err
	}

	a.http = newHTTPServer(cfg.HTTP, log, reg, []check{
		{name: "postgres", fn: pool.Ping},
		{name: "kubernetes", fn: kubeReady(a.kube)},
		{name: "authorization", fn: func(context.Context) error {
			select {
			case <-listener.Ready():
				return nil
			default:
				return errors.New("policy not loaded or change feed not listening yet")
			}
		}},
	})
	a.http.handle("/graphql", gql)
	a.http.handle("POST /v1/usage", a.metering.ingest)
	if a.stripe != nil {
		a.http.handle("POST /webhooks/stripe", a.stripe.Webhook())
	}
	if err := a.mountExports(); err != nil {
		return nil, err
	}
	if cfg.Dev {
		a.http.handle("GET /{$}", gql) // GraphiQL
	}
	if cfg.Identity.OIDCConfigFile != "" {
		ocfg, err := cfg.Identity.oidcConfig()
		if err != nil {
			return nil, err
		}
		h, err := oidc.NewHandler(ocfg, oidc.SessionsFunc(func(ctx context.Context, id tenancy.OIDCIdentity) (oidc.Session, error) {
			t, err := a.tenancy.LogInOIDC(ctx, id)
			return oidc.Session{Token: t.Secret, ExpiresAt: t.ExpiresAt}, err
		}), log, clock)
		if err != nil {
			return nil, &configError{"--oidc-config (TENANTPLANE_OIDC_CONFIG)", err.Error()}
		}
		a.http.handle("/auth/oidc/", withAnonymousActor(cfg.HTTP.proxies, h))
	}

	a.background = append(a.background,
		listener.Run,
		tenancystore.NewTokenFeed(pool, a.tenancy.TokenCache(), log, 0).Run,
		every(time.Minute, "sweeping the token cache", log, func(context.Context) error {
			a.tenancy.TokenCache().Sweep(clock())
			return nil
		}),
		sender.Run,
		every(10*time.Minute, "pruning expired tokens and rate-limit windows", log, a.tenancy.Prune),
		runIsolation(a.isolation, a.kube, cfg.Isolation, log),
		a.metering.run(),
		billingSchedule.run(a.kube, leader.Config{Namespace: cfg.Isolation.LeaseNamespace, Name: billingLease}),
	)
	return a, nil
}

// run serves HTTP on l and runs the background work until ctx is done, then
// waits for all of it to stop.
func (a *app) run(ctx context.Context, l net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for _, f := range a.background {
		wg.Go(func() {
			if err := f(ctx); err != nil && !errors.Is(err, context.Canceled) {
				a.log.Error("background work stopped", "err", err)
			}
		})
	}
	err := a.http.run(ctx, l)
	cancel()
	wg.Wait()
	return err
}

func (a *app) close() { a.pool.Close() }

func newMailer(cfg IdentityConfig, log *slog.Logger) (mail.Mailer, error) {
	if cfg.Mailer == "log" {
		return mail.LogMailer{Log: log}, nil
	}
	sc, err := cfg.smtpConfig()
	if err != nil {
		return nil, err
	}
	m, err := smtp.New(sc, log, clock)
	if err != nil {
		return nil, &configError{"--smtp-*", err.Error()}
	}
	return m, nil
}

// withAnonymousActor records the client address (through proxies) and
// request id of a request made before anyone is logged in (OIDC log-in),
// for the audit log and rate limits.
func withAnonymousActor(proxies reqmeta.Proxies, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a := tenancy.Actor{RequestID: RequestID(r.Context()), IP: proxies.ClientIP(r)}
		next.ServeHTTP(w, r.WithContext(tenancy.WithActor(r.Context(), a)))
	})
}

// every runs f every interval until ctx is done, logging its errors.
func every(interval time.Duration, what string, log *slog.Logger, f func(context.Context) error) func(context.Context) error {
	return func(ctx context.Context) error {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
				if err := f(ctx); err != nil && ctx.Err() == nil {
					log.Warn(what, "err", err)
				}
			}
		}
	}
}

// The client-side rate limit towards kube-apiserver: the reconciler applies
// many small objects, and client-go's default (5/s) would throttle it.
const kubeQPS, kubeBurst = 200, 400

// kubeRESTConfig loads a kubeconfig file, or the in-cluster configuration
// when path is empty.
func kubeRESTConfig(path string) (*rest.Config, error) {
	if path == "" {
		c, err := rest.InClusterConfig()
		if err != nil {
			return nil, &configError{"--kubeconfig (TENANTPLANE_KUBECONFIG)", "not set and not running in a cluster: " + err.Error()}
		}
		c.QPS, c.Burst = kubeQPS, kubeBurst
		return c, nil
	}
	c, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return nil, &configError{"--kubeconfig (TENANTPLANE_KUBECONFIG)", err.Error()}
	}
	c.QPS, c.Burst = kubeQPS, kubeBurst
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
