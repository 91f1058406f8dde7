package leader

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// Config names the Lease and sets the election's timing.
type Config struct {
	// Namespace and Name name the Lease. The namespace is created when
	// missing.
	Namespace string
	Name      string
	// Identity tells replicas apart; default hostname and process id.
	Identity string
	// LeaseDuration, RenewDeadline and RetryPeriod are client-go's
	// (defaults 15s, 10s, 2s).
	LeaseDuration time.Duration
	RenewDeadline time.Duration
	RetryPeriod   time.Duration
}

func (c *Config) withDefaults() error {
	if c.Namespace == "" || c.Name == "" {
		return errors.New("leader: lease namespace and name are required")
	}
	if c.Identity == "" {
		host, _ := os.Hostname()
		c.Identity = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	if c.LeaseDuration == 0 {
		c.LeaseDuration = 15 * time.Second
	}
	if c.RenewDeadline == 0 {
		c.RenewDeadline = 10 * time.Second
	}
	if c.RetryPeriod == 0 {
		c.RetryPeriod = 2 * time.Second
	}
	if c.RenewDeadline >= c.LeaseDuration || c.RetryPeriod >= c.RenewDeadline {
		return errors.New("leader: need RetryPeriod < RenewDeadline < LeaseDuration")
	}
	return nil
}

// Run takes part in the election until ctx is done. While this replica
// leads, lead runs with a context that ends when leadership is lost; when
// it returns early with an error, leadership is given up so that another
// replica (or this one, later) tries again.
func Run(ctx context.Context, kube kubernetes.Interface, cfg Config, log *slog.Logger, lead func(context.Context) error) error {
	if err := cfg.withDefaults(); err != nil {
		return err
	}
	if err := ensureNamespace(ctx, kube, cfg.Namespace); err != nil {
		return err
	}
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: cfg.Namespace, Name: cfg.Name},
		Client:     kube.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: cfg.Identity},
	}
	log = log.With("lease", cfg.Namespace+"/"+cfg.Name, "identity", cfg.Identity)
	for ctx.Err() == nil {
		lctx, cancel := context.WithCancel(ctx)
		le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock:            lock,
			LeaseDuration:   cfg.LeaseDuration,
			RenewDeadline:   cfg.RenewDeadline,
			RetryPeriod:     cfg.RetryPeriod,
			ReleaseOnCancel: true,
			Name:            cfg.Name,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(ctx context.Context) {
					log.Info("started leading")
					if err := lead(ctx); err != nil && ctx.Err() == nil {
						log.Error("leader work stopped; giving up the lease", "err", err)
						cancel()
					}
				},
				OnStoppedLeading: func() { log.Info("stopped leading") },
			},
		})
		if err != nil {
			cancel()
			return fmt.Errorf("leader election %s: %w", cfg.Name, err)
		}
		le.Run(lctx) // returns when leadership is lost or lctx ends
		cancel()
		if ctx.Err() == nil {
			select { // a pause before standing again
			case <-ctx.Done():
			case <-time.After(cfg.RetryPeriod):
			}
		}
	}
	return nil
}

func ensureNamespace(ctx context.Context, kube kubernetes.Interface, name string) error {
	_, err := kube.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			err = nil
		}
	}
	if err != nil {
		return fmt.Errorf("lease namespace %s: %w", name, err)
	}
	return nil
}
