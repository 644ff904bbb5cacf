package postgres

import (
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the database figures operators watch during a sale. A nil
// *Metrics records nothing, so adapters and tests need no registry.
type Metrics struct {
	txDuration *prometheus.HistogramVec
	retries    *prometheus.CounterVec
	ambiguous  *prometheus.CounterVec
	lockWait   prometheus.Histogram
	lockHold   prometheus.Histogram
}

// lockBuckets spread from 100 µs to 5 s: lock waits are tiny when the row
// is free and grow with the queue behind a hot row.
var lockBuckets = prometheus.ExponentialBucketsRange(0.0001, 5, 16)

// NewMetrics registers the database metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		txDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "stockguard_db_transaction_duration_seconds", Help: "Time from BEGIN to the end of COMMIT or ROLLBACK, per attempt.",
			Buckets: lockBuckets,
		}, []string{"outcome"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stockguard_db_transaction_retries_total", Help: "Transactions retried, by the SQLSTATE that caused the retry.",
		}, []string{"sqlstate"}),
		ambiguous: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stockguard_db_ambiguous_commits_total", Help: "Commits whose answer was lost, by how they were resolved (committed, unknown).",
		}, []string{"resolution"}),
		lockWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "stockguard_db_item_lock_wait_seconds", Help: "Time spent acquiring item row locks (SELECT ... FOR UPDATE).", Buckets: lockBuckets,
		}),
		lockHold: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "stockguard_db_item_lock_hold_seconds", Help: "Time item row locks were held, from acquiring them to the end of the transaction.", Buckets: lockBuckets,
		}),
	}
	reg.MustRegister(m.txDuration, m.retries, m.ambiguous, m.lockWait, m.lockHold)
	// Start the known series at zero, so dashboards and alerts see them
	// before the first retry or lost commit.
	for _, code := range []string{sqlstateSerializationFailure, sqlstateDeadlockDetected} {
		m.retries.WithLabelValues(code)
	}
	for _, r := range []string{"committed", "unknown"} {
		m.ambiguous.WithLabelValues(r)
	}
	return m
}

func (m *Metrics) tx(outcome string, d time.Duration) {
	if m != nil {
		m.txDuration.WithLabelValues(outcome).Observe(d.Seconds())
	}
}

func (m *Metrics) retry(sqlstate string) {
	if m != nil {
		m.retries.WithLabelValues(sqlstate).Inc()
	}
}

// AmbiguousCommit counts a lost commit answer and how it was resolved:
// "committed" (the row was found) or "unknown" (the caller was told to retry).
func (m *Metrics) AmbiguousCommit(resolution string) {
	if m != nil {
		m.ambiguous.WithLabelValues(resolution).Inc()
	}
}

// LockWait records how long taking item row locks took.
func (m *Metrics) LockWait(d time.Duration) {
	if m != nil {
		m.lockWait.Observe(d.Seconds())
	}
}

// LockHold records how long item row locks were held.
func (m *Metrics) LockHold(d time.Duration) {
	if m != nil {
		m.lockHold.Observe(d.Seconds())
	}
}

// poolCollector reads pgxpool statistics at scrape time.
type poolCollector struct {
	pool                                              *pgxpool.Pool
	acquired, idle, total, max, acquires, waits, wait *prometheus.Desc
}

// NewPoolCollector exposes pool's statistics.
func NewPoolCollector(pool *pgxpool.Pool) prometheus.Collector {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("stockguard_db_pool_"+name, help, nil, nil)
	}
	return &poolCollector{pool: pool,
		acquired: d("acquired_connections", "Connections in use."),
		idle:     d("idle_connections", "Connections idle in the pool."),
		total:    d("connections", "Connections open."),
		max:      d("max_connections", "The pool's size limit."),
		acquires: d("acquires_total", "Connections handed out."),
		waits:    d("acquire_waits_total", "Acquires that had to wait because every connection was busy."),
		wait:     d("acquire_wait_seconds_total", "Total time spent waiting to acquire a connection."),
	}
}

func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.acquired, c.idle, c.total, c.max, c.acquires, c.waits, c.wait} {
		ch <- d
	}
}

func (c *poolCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.pool.Stat()
	ch <- prometheus.MustNewConstMetric(c.acquired, prometheus.GaugeValue, float64(s.AcquiredConns()))
	ch <- prometheus.MustNewConstMetric(c.idle, prometheus.GaugeValue, float64(s.IdleConns()))
	ch <- prometheus.MustNewConstMetric(c.total, prometheus.GaugeValue, float64(s.TotalConns()))
	ch <- prometheus.MustNewConstMetric(c.max, prometheus.GaugeValue, float64(s.MaxConns()))
	ch <- prometheus.MustNewConstMetric(c.acquires, prometheus.CounterValue, float64(s.AcquireCount()))
	ch <- prometheus.MustNewConstMetric(c.waits, prometheus.CounterValue, float64(s.EmptyAcquireCount()))
	ch <- prometheus.MustNewConstMetric(c.wait, prometheus.CounterValue, s.AcquireDuration().Seconds())
}
