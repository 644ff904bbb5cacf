package app

import (
	"context"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/fx"
	"go.uber.org/zap"

	"github.com/stockguard/stockguard/modules/broadcast"
	"github.com/stockguard/stockguard/modules/inventory"
	"github.com/stockguard/stockguard/modules/orders"
	"github.com/stockguard/stockguard/platform/config"
	"github.com/stockguard/stockguard/platform/httpserver"
	"github.com/stockguard/stockguard/transports/websocket"
)

// Observability turns the modules' running totals into Prometheus metrics
// at scrape time, runs the periodic invariant check, and serves the log
// level on the admin server. Modules stay free of Prometheus: they expose
// counts, and this composition root publishes them.
func Observability(cfg config.Config) fx.Option {
	return fx.Module("observability",
		fx.Invoke(registerModuleMetrics),
		fx.Provide(newAuditor),
		fx.Invoke(func(*auditor) {}),
	)
}

func registerModuleMetrics(reg prometheus.Registerer, cfg config.Config, sweeper *orders.Sweeper, hub *broadcast.Hub,
	ws *websocket.Server, inv *inventory.Service, coalescer *orders.Coalescer,
) error {
	counter := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, f)
	}
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	lag := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "stockguard_broadcast_delivery_lag_seconds", Help: "Time from a stock change's publication to its write to a WebSocket.",
		Buckets: prometheus.ExponentialBucketsRange(0.0001, 10, 16),
	})
	ws.OnDelivered(func(d time.Duration) { lag.Observe(d.Seconds()) })
	collectors := []prometheus.Collector{
		lag,
		counter("stockguard_holds_expired_total", "Holds expired by the sweeper.", func() float64 { return float64(sweeper.Expired()) }),
		gauge("stockguard_sweeper_last_run_timestamp_seconds", "When the hold sweeper last finished a sweep.", func() float64 {
			if t := sweeper.LastRun(); !t.IsZero() {
				return float64(t.UnixNano()) / 1e9
			}
			return 0
		}),
		counter("stockguard_broadcast_published_total", "Stock changes published to the hub.", func() float64 { return float64(hub.Stats().Published) }),
		counter("stockguard_broadcast_messages_sent_total", "Frames handed to watchers' writers.", func() float64 { return float64(hub.Stats().Delivered) }),
		counter("stockguard_broadcast_messages_conflated_total", "Frames replaced by a newer one before a slow watcher took them.", func() float64 { return float64(hub.Stats().Conflated) }),
		counter("stockguard_broadcast_messages_dropped_total", "Frames dropped because the watcher already had a newer version.", func() float64 { return float64(hub.Stats().Stale) }),
		gauge("stockguard_broadcast_subscribers", "Open watchers (WebSocket connections and WatchStock streams).", func() float64 { return float64(hub.Stats().Subscribers) }),
		gauge("stockguard_broadcast_watched_items", "Items with at least one watcher.", func() float64 { return float64(hub.TopicCount()) }),
		gauge("stockguard_websocket_connections", "Open WebSocket connections.", func() float64 { return float64(ws.Stats().Connections) }),
		&wsCollector{ws: ws,
			evicted: prometheus.NewDesc("stockguard_websocket_evictions_total", "WebSocket clients disconnected by the server, by cause.", []string{"cause"}, nil),
			refused: prometheus.NewDesc("stockguard_websocket_refusals_total", "WebSocket connections refused, by cause.", []string{"cause"}, nil),
		},
	}
	if coalescer != nil {
		batch := prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "stockguard_order_batch_size", Help: "Purchases committed together by the coalescer.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 13), // 1 to 4,096, the default bound
		})
		coalescer.OnBatch(func(n int) { batch.Observe(float64(n)) })
		collectors = append(collectors, batch,
			gauge("stockguard_order_queue_depth", "Purchases waiting in the coalescer's queues.", func() float64 { return float64(coalescer.QueueDepth()) }),
			gauge("stockguard_order_held", "Purchases a coalescer lane holds back because their item is locked by another transaction.", func() float64 { return float64(coalescer.Held()) }),
			counter("stockguard_order_shed_total", "Purchases refused at once because a coalescer queue was full.", func() float64 { return float64(coalescer.Shed()) }),
			counter("stockguard_order_busy_total", "Times a batch left a purchase out because another transaction held its item locked; it is tried again.", func() float64 { return float64(coalescer.Busy()) }),
		)
	}
	if cfg.MetricsItemCap > 0 {
		collectors = append(collectors, newStockCollector(inv, hub, cfg.MetricsItemCap))
	}
	for _, c := range collectors {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

type wsCollector struct {
	ws               *websocket.Server
	evicted, refused *prometheus.Desc
}

func (c *wsCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.evicted; ch <- c.refused }

func (c *wsCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.ws.Stats()
	for _, cause := range []string{"slow_consumer", "write_error", "ping_failed", "frame_too_big"} {
		ch <- prometheus.MustNewConstMetric(c.evicted, prometheus.CounterValue, float64(st.Evicted[cause]), cause)
	}
	for _, cause := range []string{"origin", "handshake", "capacity", "shutdown"} {
		ch <- prometheus.MustNewConstMetric(c.refused, prometheus.CounterValue, float64(st.Refused[cause]), cause)
	}
}

// stockCollector exposes per-item stock gauges for at most limit items:
// the watched (hot) items first, then the oldest. The item_id label is
// bounded by the cap.
type stockCollector struct {
	inv                       *inventory.Service
	hub                       *broadcast.Hub
	limit                     int
	available, reserved, sold *prometheus.Desc
}

func newStockCollector(inv *inventory.Service, hub *broadcast.Hub, limit int) *stockCollector {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("stockguard_stock_"+name, help, []string{"item_id", "sku"}, nil)
	}
	return &stockCollector{inv: inv, hub: hub, limit: limit,
		available: d("available", "Units available, for up to STOCKGUARD_METRICS_ITEM_CAP items."),
		reserved:  d("reserved", "Units held by PENDING orders."),
		sold:      d("sold", "Units sold."),
	}
}

func (c *stockCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.available
	ch <- c.reserved
	ch <- c.sold
}

func (c *stockCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	ids := c.hub.Topics()
	sort.Strings(ids)
	if len(ids) > c.limit {
		ids = ids[:c.limit]
	}
	items, err := c.inv.GetItems(ctx, ids)
	if err != nil {
		return
	}
	if len(items) < c.limit {
		page, err := c.inv.ListItems(ctx, inventory.ListParams{PageSize: c.limit})
		if err == nil {
			seen := map[string]bool{}
			for _, it := range items {
				seen[it.ID] = true
			}
			for _, it := range page.Items {
				if len(items) >= c.limit {
					break
				}
				if !seen[it.ID] {
					items = append(items, it)
				}
			}
		}
	}
	for _, it := range items {
		ch <- prometheus.MustNewConstMetric(c.available, prometheus.GaugeValue, float64(it.Available), it.ID, it.SKU)
		ch <- prometheus.MustNewConstMetric(c.reserved, prometheus.GaugeValue, float64(it.Reserved), it.ID, it.SKU)
		ch <- prometheus.MustNewConstMetric(c.sold, prometheus.GaugeValue, float64(it.Sold), it.ID, it.SKU)
	}
}

// auditor checks the stock invariant in the background, like
// `stockguard verify`, and publishes the last result.
type auditor struct {
	audit    inventory.Auditor
	interval time.Duration
	log      *zap.Logger

	violations, lastRun, lastOK prometheus.Gauge
	cancel                      context.CancelFunc
	wg                          sync.WaitGroup
}

func newAuditor(lc fx.Lifecycle, cfg config.Config, a inventory.Auditor, reg prometheus.Registerer, log *zap.Logger) (*auditor, error) {
	au := &auditor{audit: a, interval: cfg.AuditInterval, log: log.Named("audit"),
		violations: prometheus.NewGauge(prometheus.GaugeOpts{Name: "stockguard_invariant_violations", Help: "Problems the last invariant check found (0 is healthy)."}),
		lastRun:    prometheus.NewGauge(prometheus.GaugeOpts{Name: "stockguard_invariant_last_check_timestamp_seconds", Help: "When the invariant was last checked."}),
		lastOK:     prometheus.NewGauge(prometheus.GaugeOpts{Name: "stockguard_invariant_last_check_success", Help: "1 if the last invariant check ran to completion, 0 if it failed to run."}),
	}
	for _, g := range []prometheus.Collector{au.violations, au.lastRun, au.lastOK} {
		if err := reg.Register(g); err != nil {
			return nil, err
		}
	}
	if au.interval <= 0 {
		return au, nil
	}
	lc.Append(fx.StartStopHook(au.start, au.stop))
	return au, nil
}

func (a *auditor) start() {
	ctx, cancel := context.WithCancel(context.Background())
	a.cancel = cancel
	a.wg.Go(func() {
		t := time.NewTicker(a.interval)
		defer t.Stop()
		a.check(ctx)
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				a.check(ctx)
			}
		}
	})
}

func (a *auditor) stop() {
	if a.cancel != nil {
		a.cancel()
		a.wg.Wait()
	}
}

// Check runs one audit now and publishes its result.
func (a *auditor) check(ctx context.Context) {
	report, err := a.audit.Audit(ctx)
	a.lastRun.SetToCurrentTime()
	if err != nil {
		a.lastOK.Set(0)
		if ctx.Err() == nil {
			a.log.Warn("invariant check did not run", zap.Error(err))
		}
		return
	}
	a.lastOK.Set(1)
	a.violations.Set(float64(len(report.Discrepancies)))
	for _, d := range report.Discrepancies {
		a.log.Error("stock invariant violated", zap.String("item_id", d.ItemID), zap.String("sku", d.SKU), zap.String("problem", d.Reason))
	}
}

// LogLevel serves the logger's level on the admin server: GET /loglevel
// reads it, PUT /loglevel with {"level":"debug"} changes it.
func LogLevel(lvl zap.AtomicLevel) fx.Option {
	return fx.Provide(httpserver.AsAdminRoute(func() httpserver.Route {
		return httpserver.Route{Pattern: "/loglevel", Handler: lvl}
	}))
}
