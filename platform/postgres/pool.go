package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/exaring/otelpgx"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/fx"
	"go.uber.org/zap"
)

// PoolConfig sizes the connection pool.
type PoolConfig struct {
	URL      string
	MaxConns int32
	// Tracer, when set, traces every query (otelpgx in the app).
	Tracer pgx.QueryTracer
}

// ParseURL checks a connection URL and says how to fix it when it is wrong.
func ParseURL(url string) (*pgxpool.Config, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("%w; expected postgres://user:pass@host:5432/db?sslmode=disable", err)
	}
	return cfg, nil
}

// Open connects a pool and checks that the server answers.
func Open(ctx context.Context, c PoolConfig) (*pgxpool.Pool, error) {
	cfg, err := ParseURL(c.URL)
	if err != nil {
		return nil, fmt.Errorf("DATABASE_URL: %w", err)
	}
	if c.MaxConns > 0 {
		cfg.MaxConns = c.MaxConns
	}
	if c.Tracer != nil {
		cfg.ConnConfig.Tracer = c.Tracer
	}
	cfg.MaxConnIdleTime = 5 * time.Minute
	// Every statement here is short. JIT compiling one costs tens of
	// milliseconds, and the planner turns it on by cost estimate alone: on
	// a large orders table the batch's idempotency lookup (a few index
	// probes) was compiled on every call, 44 ms each. A URL that sets jit
	// itself keeps its choice.
	if _, set := cfg.ConnConfig.RuntimeParams["jit"]; !set {
		cfg.ConnConfig.RuntimeParams["jit"] = "off"
	}
	cfg.AfterConnect = func(_ context.Context, conn *pgx.Conn) error {
		registerUUIDText(conn.TypeMap())
		return nil
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to postgres: %w", err)
	}
	pingCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := pool.Ping(pingCtx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect to postgres at %s:%d: %w", cfg.ConnConfig.Host, cfg.ConnConfig.Port, err)
	}
	return pool, nil
}

// Provide opens the pool, applies pending migrations before anything else
// starts, and closes the pool when the app stops.
func Provide(lc fx.Lifecycle, c PoolConfig, tx TxConfig, log *zap.Logger, reg prometheus.Registerer, tp trace.TracerProvider) (*pgxpool.Pool, *Runner, error) {
	c.Tracer = otelpgx.NewTracer(otelpgx.WithTracerProvider(tp)) // statements, not their parameters
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	pool, err := Open(ctx, c)
	if err != nil {
		return nil, nil, err
	}
	applied, err := Migrate(ctx, pool)
	if err != nil {
		pool.Close()
		return nil, nil, err
	}
	log.Info("postgres ready", zap.Ints("migrations_applied", applied), zap.Int32("max_conns", pool.Config().MaxConns))
	lc.Append(fx.StopHook(pool.Close))
	if err := reg.Register(NewPoolCollector(pool)); err != nil {
		pool.Close()
		return nil, nil, err
	}
	return pool, NewRunner(pool, tx).WithMetrics(NewMetrics(reg)), nil
}

// Module provides the pool and the transaction Runner. It needs a
// PoolConfig, a TxConfig and a logger.
var Module = fx.Module("postgres", fx.Provide(Provide))
