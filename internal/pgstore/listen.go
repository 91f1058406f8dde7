package pgstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgxlisten"
)

// Listen listens on each channel of handlers, on a connection taken out of
// pool for as long as it listens, until ctx is done, and listens again
// delay after the connection is lost. Each time it listens it calls each
// handler's HandleBacklog (when it has one); lost, when not nil, is
// called every time it stops listening, since notifications sent then are
// not heard. It returns nil when ctx is canceled.
func Listen(ctx context.Context, pool *pgxpool.Pool, handlers map[string]pgxlisten.Handler,
	delay time.Duration, log *slog.Logger, lost func(),
) error {
	pl := &pgxlisten.Listener{
		Connect: func(ctx context.Context) (*pgx.Conn, error) {
			c, err := pool.Acquire(ctx)
			if err != nil {
				return nil, fmt.Errorf("acquiring listen connection: %w", err)
			}
			return c.Hijack(), nil
		},
		LogError: func(ctx context.Context, err error) {
			if lost != nil {
				lost()
			}
			if ctx.Err() == nil {
				log.Warn("listener", "err", err)
			}
		},
		ReconnectDelay: delay,
	}
	var channels []string
	for ch, h := range handlers {
		pl.Handle(ch, h)
		channels = append(channels, ch)
	}
	err := pl.Listen(ctx)
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return nil // Listen ends only with ctx; being stopped is no failure
	}
	return fmt.Errorf("listening on %v: %w", channels, err)
}

// QueryConns is how many connections the server's pool keeps for
// statements, unless the database URL asks for more (pool_max_conns);
// pgxpool's own default, the number of CPUs but at least 4, starves the
// API on small machines. The listeners' connections come on top.
const QueryConns = 8
