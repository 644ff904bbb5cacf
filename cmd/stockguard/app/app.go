// Package app composes stockguard's fx modules into the application. The
// stockguard command and the integration tests both start it from here, so
// what is tested is what ships.
package app

import (
	"context"
	"slices"
	"time"

	"go.uber.org/fx"
	"go.uber.org/fx/fxevent"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/stockguard/stockguard/modules/broadcast"
	bcpg "github.com/stockguard/stockguard/modules/broadcast/postgres"
	"github.com/stockguard/stockguard/modules/inventory"
	invmem "github.com/stockguard/stockguard/modules/inventory/memory"
	invpg "github.com/stockguard/stockguard/modules/inventory/postgres"
	"github.com/stockguard/stockguard/modules/orders"
	ordmem "github.com/stockguard/stockguard/modules/orders/memory"
	ordpg "github.com/stockguard/stockguard/modules/orders/postgres"
	"github.com/stockguard/stockguard/platform/auth"
	"github.com/stockguard/stockguard/platform/config"
	"github.com/stockguard/stockguard/platform/health"
	"github.com/stockguard/stockguard/platform/httpserver"
	"github.com/stockguard/stockguard/platform/metrics"
	"github.com/stockguard/stockguard/platform/postgres"
	"github.com/stockguard/stockguard/platform/profiling"
	"github.com/stockguard/stockguard/platform/tracing"
	transport "github.com/stockguard/stockguard/transports/connect"
	"github.com/stockguard/stockguard/transports/websocket"
)

// DevTokenTTL is how long the tokens logged in dev mode last.
const DevTokenTTL = 24 * time.Hour

// Options is the whole application for cfg.
func Options(cfg config.Config, log *zap.Logger) fx.Option {
	return fx.Options(
		fx.WithLogger(func() fxevent.Logger {
			l := &fxevent.ZapLogger{Logger: log.Named("fx")}
			l.UseLogLevel(zapcore.DebugLevel)
			return l
		}),
		fx.StopTimeout(cfg.ShutdownTimeout),
		fx.Supply(
			cfg, log,
			httpserver.Config{API: cfg.HTTPAddr, Admin: cfg.AdminAddr, ReadHeaderTimeout: cfg.ReadHeaderTimeout},
			orders.SweeperConfig{Interval: cfg.SweepInterval, BatchSize: cfg.SweepBatchSize},
			coalescerConfig(cfg),
		),
		fx.Provide(func() (*auth.Authority, error) { return Authority(cfg, log) }),
		Storage(cfg, log),
		StockFeed(cfg),
		inventory.Module,
		orders.Module,
		broadcast.Module,
		fx.Provide(Levels),
		httpserver.Module,
		health.Module,
		metrics.Module,
		profiling.Module,
		tracing.Module,
		Observability(cfg),
		transport.Module,
		websocket.Module,
	)
}

// Levels reads watched items' levels through the inventory service, for
// the broadcast hub's snapshots.
func Levels(inv *inventory.Service) broadcast.Levels {
	return broadcast.LevelsFunc(func(ctx context.Context, ids []string) ([]broadcast.Update, error) {
		items, err := inv.GetItems(ctx, ids)
		if err != nil {
			return nil, err
		}
		out := make([]broadcast.Update, len(items))
		for i, it := range items {
			out[i] = updateOf(it)
		}
		return out, nil
	})
}

func updateOf(it inventory.Item) broadcast.Update {
	return broadcast.Update{ItemID: it.ID, Available: it.Available, Reserved: it.Reserved, Sold: it.Sold, Version: it.Version}
}

func coalescerConfig(cfg config.Config) orders.CoalescerConfig {
	if !cfg.Coalesce {
		return orders.CoalescerConfig{} // MaxBatch 0: off
	}
	return orders.CoalescerConfig{Lanes: cfg.CoalesceLanes, MaxBatch: cfg.CoalesceMaxBatch, QueueSize: cfg.CoalesceQueue,
		IdleAfter: time.Second, Timeout: cfg.StatementTimeout * 2}
}

// Authority returns the token authority for cfg. With no secret configured
// it generates one and logs ready-to-use tokens: dev mode.
func Authority(cfg config.Config, log *zap.Logger) (*auth.Authority, error) {
	if cfg.JWTSecret != "" {
		return auth.NewAuthority([]byte(cfg.JWTSecret)), nil
	}
	secret, err := auth.GenerateSecret()
	if err != nil {
		return nil, err
	}
	a := auth.NewAuthority([]byte(secret))
	admin, err := a.Issue("admin", auth.RoleAdmin, DevTokenTTL)
	if err != nil {
		return nil, err
	}
	customer, err := a.Issue("demo-customer", auth.RoleCustomer, DevTokenTTL)
	if err != nil {
		return nil, err
	}
	log.Warn("DEV MODE: STOCKGUARD_JWT_SECRET is not set; generated a secret for this process only",
		zap.String("admin_token", admin),
		zap.String("customer_token", customer),
		zap.Duration("token_ttl", DevTokenTTL))
	return a, nil
}

// Storage binds the store ports to PostgreSQL when cfg names a database,
// and to the in-memory adapters otherwise.
func Storage(cfg config.Config, log *zap.Logger) fx.Option {
	if cfg.DatabaseURL == "" {
		log.Warn("storage: IN-MEMORY store (DATABASE_URL is not set); data lives only as long as this process")
		return fx.Module("storage.memory",
			fx.Provide(
				fx.Annotate(invmem.NewItemStore, fx.As(fx.Self()), fx.As(new(inventory.Store)), fx.As(new(inventory.Auditor))),
				func(s *invmem.ItemStore) ordmem.Items { return s },
				fx.Annotate(ordmem.NewOrderStore, fx.As(new(orders.Store))),
			),
			// The in-memory store announces committed changes in-process,
			// in a span linked to the change's own trace when anyone watches
			// one of the items (as the PostgreSQL feed does).
			fx.Invoke(func(s *invmem.ItemStore, hub *broadcast.Hub, tp trace.TracerProvider) {
				tracer := tp.Tracer("github.com/stockguard/stockguard/cmd/stockguard/app")
				s.OnChange(func(ctx context.Context, items []inventory.Item) {
					if slices.ContainsFunc(items, func(it inventory.Item) bool { return hub.Watched(it.ID) }) {
						var opts []trace.SpanStartOption
						if cause := trace.SpanContextFromContext(ctx); cause.IsValid() {
							opts = append(opts, trace.WithLinks(trace.Link{SpanContext: cause}))
						}
						_, span := tracer.Start(context.Background(), "stockguard.broadcast.publish", opts...)
						defer span.End()
					}
					for _, it := range items {
						_ = hub.Publish(updateOf(it)) // encoding a fixed message cannot fail
					}
				})
			}),
		)
	}
	log.Info("storage: PostgreSQL")
	return fx.Module("storage.postgres",
		fx.Supply(
			postgres.PoolConfig{URL: cfg.DatabaseURL, MaxConns: cfg.DBMaxConns},
			postgres.TxConfig{LockTimeout: cfg.LockTimeout, StatementTimeout: cfg.StatementTimeout, MaxAttempts: cfg.TxMaxAttempts},
		),
		postgres.Module,
		fx.Provide(
			fx.Annotate(invpg.NewItemStore, fx.As(new(inventory.Store)), fx.As(new(inventory.Auditor))),
			fx.Annotate(ordpg.NewOrderStore, fx.As(new(orders.Store))),
			health.AsCheck(func(r *postgres.Runner) health.Check {
				return health.Check{Name: "postgres", Fn: func(ctx context.Context) error { return r.Pool().Ping(ctx) }}
			}),
		),
	)
}

// StockFeed feeds the broadcast hub from PostgreSQL: every replica LISTENs
// for committed changes, wherever they were made. The in-memory store
// publishes in-process instead (see Storage).
func StockFeed(cfg config.Config) fx.Option {
	if cfg.DatabaseURL == "" {
		return fx.Options()
	}
	return fx.Module("broadcast.postgres",
		fx.Provide(
			func(lc fx.Lifecycle, r *postgres.Runner, hub *broadcast.Hub, log *zap.Logger, tp trace.TracerProvider) *bcpg.Feed {
				connCfg := r.Pool().Config().ConnConfig.Copy()
				connCfg.Tracer = nil // the LISTEN loop is not a query worth a span per wait
				f := bcpg.NewFeed(func(ctx context.Context) (*pgx.Conn, error) {
					return pgx.ConnectConfig(ctx, connCfg.Copy())
				}, hub, log, tp)
				lc.Append(fx.StartStopHook(f.Start, f.Stop))
				return f
			},
			health.AsCheck(func(f *bcpg.Feed) health.Check { return health.Check{Name: "stock_feed", Fn: f.Check} }),
		),
		fx.Invoke(func(f *bcpg.Feed, reg prometheus.Registerer) error {
			for _, c := range []prometheus.Collector{
				prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "stockguard_stock_feed_notifications_total",
					Help: "Committed stock changes heard on the LISTEN connection."}, func() float64 { return float64(f.Notifications()) }),
				prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "stockguard_stock_feed_reconnects_total",
					Help: "Times the LISTEN connection was lost and reopened (each followed by a resync)."}, func() float64 { return float64(f.Reconnects()) }),
			} {
				if err := reg.Register(c); err != nil {
					return err
				}
			}
			return nil
		}),
	)
}
