package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tenantplane/tenantplane/internal/testenv"
)

// devPeers are the local peers `tenantplane dev` started, stopped in
// reverse order when it ends.
type devPeers struct {
	stops []func()
}

func (p *devPeers) add(stop func()) { p.stops = append(p.stops, stop) }

func (p *devPeers) stop() {
	for i := len(p.stops) - 1; i >= 0; i-- {
		p.stops[i]()
	}
	p.stops = nil
}

// The Stripe key and webhook secret `dev` uses against stripe-mock, which
// accepts any key.
const (
	devStripeKey     = "sk_test_tenantplane_dev"
	devWebhookSecret = "whsec_tenantplane_dev"
)

// devConfig is the configuration `dev` starts from: development mode on
// loopback, mail written to the log.
func devConfig() Config {
	cfg := defaultConfig()
	cfg.Dev = true
	cfg.HTTP.Listen = "127.0.0.1:8080"
	cfg.Identity.Mailer = "log"
	return cfg
}

func newDevCommand() *cobra.Command {
	cfg := devConfig()
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run tenantplane locally with a throwaway Postgres, Kubernetes and stripe-mock",
		Long: `dev starts what tenantplane needs on this machine and serves against it:
a throwaway PostgreSQL cluster, a Kubernetes control plane (etcd,
kube-apiserver, kube-controller-manager, kube-scheduler and kwok, so pods
become Running), and stripe-mock. It migrates the database, then serves
until Ctrl-C, which stops everything it started.

A database URL, kubeconfig or Stripe API URL that is given (flags,
DATABASE_URL, KUBECONFIG, TENANTPLANE_STRIPE_API_URL) is used instead of
starting that peer. The Kubernetes and stripe-mock programs come from
` + "`make tools`" + ` (the first build takes several minutes).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := applyEnv(cmd); err != nil {
				return err
			}
			return runDev(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), cfg)
		},
	}
	cfg.bindFlags(cmd.Flags())
	return cmd
}

func runDev(ctx context.Context, out, logOut io.Writer, cfg Config) (err error) {
	say := func(format string, args ...any) { _, _ = fmt.Fprintf(out, "==> "+format+"\n", args...) }
	peers := &devPeers{}
	defer func() {
		say("stopping what dev started")
		peers.stop()
		say("stopped")
	}()
	// Peers get their own start-up budget; Ctrl-C still cancels ctx.
	startCtx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()

	if cfg.DatabaseURL == "" {
		say("starting a throwaway PostgreSQL cluster")
		t0 := time.Now()
		pg, err := testenv.StartPostgres(startCtx)
		if err != nil {
			return fmt.Errorf("starting postgres: %w", err)
		}
		peers.add(pg.Stop)
		if err := pg.CreateDatabase(startCtx, "tenantplane", ""); err != nil {
			return err
		}
		cfg.DatabaseURL = pg.URL("tenantplane")
		say("postgres ready in %s at %s", time.Since(t0).Round(time.Millisecond), cfg.DatabaseURL)
	} else {
		say("using the database at DATABASE_URL")
	}

	if cfg.Kubeconfig == "" {
		say("starting a local Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok)")
		t0 := time.Now()
		kube, err := testenv.StartKube(startCtx, testenv.KubeOptions{Pods: true})
		if err != nil {
			return fmt.Errorf("starting kubernetes (run `make tools` to build its programs): %w", err)
		}
		peers.add(kube.Stop)
		cfg.Kubeconfig = kube.KubeconfigPath()
		say("kubernetes ready in %s; kubeconfig %s (nodes: %v)", time.Since(t0).Round(time.Millisecond), cfg.Kubeconfig, kube.NodeNames())
	} else {
		say("using the cluster of kubeconfig %s", cfg.Kubeconfig)
	}

	stripeURL := cfg.Stripe.APIURL
	if stripeURL == "" {
		say("starting stripe-mock")
		sm, err := testenv.StartStripeMock(startCtx)
		if err != nil {
			return fmt.Errorf("starting stripe-mock (run `make tools` to build it): %w", err)
		}
		peers.add(sm.Stop)
		stripeURL = sm.URL
		say("stripe-mock at %s (https %s)", sm.URL, sm.HTTPSURL)
	} else {
		say("using the Stripe API at %s", stripeURL)
	}
	cfg.Stripe.APIURL = stripeURL
	if cfg.Stripe.APIKey == "" {
		cfg.Stripe.APIKey = devStripeKey
	}
	if len(cfg.Stripe.WebhookSecrets) == 0 {
		cfg.Stripe.WebhookSecrets = []string{devWebhookSecret}
	}
	// Checkout returns the payer to the console; in dev, to GraphiQL.
	if cfg.Stripe.SuccessURL == "" {
		cfg.Stripe.SuccessURL = "http://" + cfg.HTTP.Listen + "/?topup=done"
	}
	if cfg.Stripe.CancelURL == "" {
		cfg.Stripe.CancelURL = "http://" + cfg.HTTP.Listen + "/?topup=cancelled"
	}

	if err := cfg.validate(); err != nil {
		return err
	}
	say("migrating the database")
	if err := migrateUp(startCtx, cfg.DatabaseURL, newLogger(logOut, "warn")); err != nil {
		return err
	}
	cfg.MigrateOnStart = false

	l, err := net.Listen("tcp", cfg.HTTP.Listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", cfg.HTTP.Listen, err)
	}
	base := "http://" + l.Addr().String()
	if cfg.Identity.PublicURL == defaultIdentityConfig().PublicURL {
		cfg.Identity.PublicURL = base
	}

	log := newLogger(logOut, cfg.LogLevel)
	a, err := newApp(ctx, cfg, log)
	if err != nil {
		_ = l.Close()
		return err
	}
	defer a.close()

	say("seeding demo accounts")
	accounts, err := seedDemo(ctx, a.tenancy)
	if err != nil {
		return err
	}
	if len(accounts) == 0 {
		say("the database was seeded before; its accounts keep their passwords")
	}
	for _, acc := range accounts {
		_, _ = fmt.Fprintf(out, "    %-28s password %-18s %s\n", acc.Email, acc.Password, acc.Role)
	}

	say("tenantplane is up:")
	for _, line := range []string{
		"GraphQL       " + base + "/graphql",
		"GraphiQL      " + base + "/",
		"health        " + base + "/healthz",
		"readiness     " + base + "/readyz",
		"metrics       " + base + "/metrics",
		"database      " + cfg.DatabaseURL,
		"kubeconfig    " + cfg.Kubeconfig,
		"stripe api    " + stripeURL,
		"stripe hook   " + base + "/webhooks/stripe (secret " + strings.Join(cfg.Stripe.WebhookSecrets, ",") + ")",
	} {
		_, _ = fmt.Fprintln(out, "    "+line)
	}
	say("press Ctrl-C to stop")
	if err := a.run(ctx, l); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}
