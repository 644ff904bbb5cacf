package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/propagation"
)

// SQLSTATE codes the runner acts on.
const (
	sqlstateSerializationFailure = "40001"
	sqlstateDeadlockDetected     = "40P01"
	sqlstateLockNotAvailable     = "55P03"
	sqlstateQueryCanceled        = "57014"
	SQLStateUniqueViolation      = "23505"
)

// StockChannel is the NOTIFY channel on which every transaction that
// changes an item's stock announces the item's new level. PostgreSQL
// delivers a NOTIFY only when its transaction commits, so listeners never
// hear of a change that did not happen. The payload is StockNotice as
// JSON.
const StockChannel = "stockguard_stock"

// StockNotice is the payload on StockChannel: the new levels of up to
// StockItemsPerNotice items that one statement changed. A statement that
// changes more sends more notices: one per item was a NOTIFY per item of
// a coalesced batch, each queued, delivered and decoded on its own.
type StockNotice struct {
	// TraceParent is the W3C traceparent of the change's transaction, if it
	// was traced, so the broadcast can link to the purchase that caused it.
	TraceParent string              `json:"tp,omitempty"`
	Items       []StockNotification `json:"items"`
}

// StockItemsPerNotice bounds a StockNotice so that its payload stays under
// PostgreSQL's 8,000 bytes: an item takes at most 130 (a uuid, three int
// levels and a bigint version, as json_build_object writes them).
const StockItemsPerNotice = 50

// StockNotification is one item's new level. Alone, with TraceParent, it
// was the whole payload on StockChannel before StockNotice; listeners
// still accept that form from servers not yet upgraded.
type StockNotification struct {
	ItemID    string `json:"id"`
	Available int32  `json:"a"`
	Reserved  int32  `json:"r"`
	Sold      int32  `json:"s"`
	Version   int64  `json:"v"`
	// TraceParent is the W3C traceparent of the change's transaction, if it
	// was traced, so the broadcast can link to the purchase that caused it.
	TraceParent string `json:"tp,omitempty"`
}

// NotifyStockSQL turns rows (id, available, reserved, sold, version) of the
// CTE named changed into StockNotices of up to StockItemsPerNotice items,
// in the statement that changed them. param is the placeholder ($N) that
// carries TraceParent(ctx).
func NotifyStockSQL(param string) string {
	return `SELECT pg_notify('` + StockChannel + `', json_build_object('tp', ` + param + `::text, 'items',
		json_agg(json_build_object('id', id, 'a', available, 'r', reserved, 's', sold, 'v', version)))::text)
		FROM (SELECT *, (row_number() OVER () - 1) / ` + strconv.Itoa(StockItemsPerNotice) + ` AS notice FROM changed) c GROUP BY notice`
}

// ParseStockNotice reads a StockChannel payload: a StockNotice, or the
// one-item form of servers not yet upgraded.
func ParseStockNotice(payload string) (StockNotice, error) {
	var n StockNotice
	if err := json.Unmarshal([]byte(payload), &n); err != nil {
		return StockNotice{}, err
	}
	if len(n.Items) > 0 {
		return n, nil
	}
	var one StockNotification
	if err := json.Unmarshal([]byte(payload), &one); err != nil {
		return StockNotice{}, err
	}
	if one.ItemID == "" {
		return StockNotice{}, errors.New("stock notice names no item")
	}
	tp := one.TraceParent
	one.TraceParent = ""
	return StockNotice{TraceParent: tp, Items: []StockNotification{one}}, nil
}

// TraceParent is the W3C traceparent of the span in ctx, or "".
func TraceParent(ctx context.Context) string {
	carrier := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, carrier)
	return carrier.Get("traceparent")
}

// TxConfig bounds every transaction the runner starts.
type TxConfig struct {
	LockTimeout      time.Duration // SET LOCAL lock_timeout
	StatementTimeout time.Duration // SET LOCAL statement_timeout
	MaxAttempts      int           // tries on 40001/40P01, at least 1
}

// ErrTimeout means a lock or statement timeout ended the transaction. It
// was rolled back and changed nothing.
var ErrTimeout = errors.New("postgres: lock or statement timeout")

// AmbiguousCommitError means COMMIT was sent but its answer was lost: the
// transaction may or may not have committed. Callers must find out (for
// example by looking up the row they inserted) rather than retry blindly.
type AmbiguousCommitError struct{ Err error }

func (e *AmbiguousCommitError) Error() string {
	return "postgres: commit outcome unknown: " + e.Err.Error()
}

func (e *AmbiguousCommitError) Unwrap() error { return e.Err }

// Runner runs transactions against a pool.
type Runner struct {
	pool     *pgxpool.Pool
	cfg      TxConfig
	begin    string // BEGIN with the timeouts set for the transaction
	settings string // one statement that sets the timeouts and planner settings of a pipelined transaction
	metrics  *Metrics
}

// NewRunner returns a Runner. A MaxAttempts below 1 means 1.
func NewRunner(pool *pgxpool.Pool, cfg TxConfig) *Runner {
	if cfg.MaxAttempts < 1 {
		cfg.MaxAttempts = 1
	}
	// The values are formatted durations, never user input.
	begin := fmt.Sprintf("BEGIN; SET LOCAL lock_timeout = '%s'; SET LOCAL statement_timeout = '%s'",
		millis(cfg.LockTimeout), millis(cfg.StatementTimeout))
	// A pipelined transaction's statements are index lookups and inserts by
	// design. With sequential scans off, statistics gathered while a table
	// was tiny cannot plan one: a batch over 75 of 10,000 items just
	// created, with items last analyzed when it held one row, was planned
	// as a scan of every item for the row locks and another for the UPDATE,
	// until autovacuum analyzed the table again.
	settings := fmt.Sprintf("SELECT set_config('lock_timeout', '%s', true), set_config('statement_timeout', '%s', true), "+
		"set_config('enable_seqscan', 'off', true)",
		millis(cfg.LockTimeout), millis(cfg.StatementTimeout))
	return &Runner{pool: pool, cfg: cfg, begin: begin, settings: settings}
}

// WithMetrics makes the runner record its transactions in m.
func (r *Runner) WithMetrics(m *Metrics) *Runner {
	r.metrics = m
	return r
}

// Metrics returns where adapters record lock timings; nil records nothing.
func (r *Runner) Metrics() *Metrics { return r.metrics }

// Pool returns the pool the runner uses, for reads outside a transaction.
func (r *Runner) Pool() *pgxpool.Pool { return r.pool }

// InTx runs fn in a transaction with the configured timeouts. It commits
// when fn returns nil and rolls back otherwise. The whole transaction is
// retried, with jittered backoff, on serialization failures and deadlocks,
// so fn must have no effects outside tx. Lock and statement timeouts come
// back as ErrTimeout; a commit whose outcome is unknown as
// *AmbiguousCommitError, never retried.
func (r *Runner) InTx(ctx context.Context, fn func(pgx.Tx) error) error {
	return r.retry(ctx, func() error { return r.once(ctx, fn) })
}

// Querier runs a statement inside a pipelined transaction (see
// InTxPipelined). Each call is a round trip of its own.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// InTxPipelined runs a transaction in two round trips where InTx takes
// four. The first carries BEGIN, the timeouts, enable_seqscan = off (the
// transaction is meant for statements that find their rows by index) and
// the statements that first queues; fn reads their results from br, in the order they were
// queued, and may then run more statements through q. The second carries
// the batch fn returns (nil for none) followed by COMMIT. A transaction
// that holds row locks thus holds them for one round trip fewer, and the
// connection's goroutine is woken twice instead of four times.
//
// Commit, rollback, retries and errors are as for InTx. first is called
// once per attempt, so it must build a fresh batch each time. Any failure
// after the second batch has been sent, other than an error the server
// reported, is an *AmbiguousCommitError: the COMMIT may have run.
func (r *Runner) InTxPipelined(ctx context.Context, first func(b *pgx.Batch),
	fn func(br pgx.BatchResults, q Querier) (*pgx.Batch, error),
) error {
	return r.retry(ctx, func() error { return r.oncePipelined(ctx, first, fn) })
}

func (r *Runner) retry(ctx context.Context, once func() error) error {
	var err error
	for attempt := 1; ; attempt++ {
		began := time.Now()
		err = once()
		r.metrics.tx(outcomeOf(err), time.Since(began))
		if err == nil || attempt >= r.cfg.MaxAttempts || !retryable(err) {
			break
		}
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) {
			r.metrics.retry(pgErr.Code)
		}
		backoff := time.Duration(attempt) * time.Millisecond
		backoff += rand.N(backoff + time.Millisecond) //nolint:gosec // jitter needs no cryptographic randomness
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && (pgErr.Code == sqlstateLockNotAvailable || pgErr.Code == sqlstateQueryCanceled) && ctx.Err() == nil {
		return fmt.Errorf("%w: %s", ErrTimeout, pgErr.Message)
	}
	if ctx.Err() != nil && err != nil {
		// pgx reports a cancelled query in several ways; callers want the cause.
		return fmt.Errorf("%w (%w)", ctx.Err(), err)
	}
	return err
}

func (r *Runner) once(ctx context.Context, fn func(pgx.Tx) error) error {
	// BEGIN and the transaction's timeouts travel as one simple-protocol
	// message: one round trip instead of two.
	tx, err := r.pool.BeginTx(ctx, pgx.TxOptions{BeginQuery: r.begin})
	if err != nil {
		return err
	}
	// Rollback after a successful commit is a no-op; on failure it returns
	// the connection to the pool in a clean state, or closes it.
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // the first error is the one that matters

	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		if notCommitted(err) {
			return err
		}
		return &AmbiguousCommitError{Err: err}
	}
	return nil
}

// notCommitted reports whether err, from COMMIT or from a statement sent
// with it, proves that the transaction did not commit: nothing was sent,
// the transaction had already failed, or the server answered with an error
// and kept the session. A FATAL or PANIC ends the session and may arrive
// after the commit itself, so it proves nothing.
func notCommitted(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		severity := pgErr.SeverityUnlocalized
		if severity == "" {
			severity = pgErr.Severity
		}
		return severity != "FATAL" && severity != "PANIC"
	}
	var notSent pgx.ErrPreprocessingBatch
	return errors.As(err, &notSent) || errors.Is(err, pgx.ErrTxCommitRollback)
}

func (r *Runner) oncePipelined(ctx context.Context, first func(b *pgx.Batch),
	fn func(br pgx.BatchResults, q Querier) (*pgx.Batch, error),
) error {
	pc, err := r.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	conn := pc.Conn()
	defer func() {
		// A transaction that failed, or never reached COMMIT, is rolled back
		// so the connection goes back to the pool clean; if even that fails
		// the connection is closed (the pool discards closed connections and
		// any not idle outside a transaction).
		if !conn.IsClosed() && conn.PgConn().TxStatus() != 'I' {
			if _, rerr := conn.Exec(context.WithoutCancel(ctx), "ROLLBACK"); rerr != nil {
				_ = conn.Close(context.WithoutCancel(ctx))
			}
		}
		pc.Release()
	}()

	var b pgx.Batch
	b.Queue("BEGIN")
	b.Queue(r.settings)
	first(&b)
	q := &pipelined{br: conn.SendBatch(ctx, &b), conn: conn}
	for range 2 { // BEGIN, settings
		if _, err := q.br.Exec(); err != nil {
			_ = q.close()
			return err
		}
	}
	last, err := fn(q.br, q)
	if cerr := q.close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}

	if last == nil {
		last = &pgx.Batch{}
	}
	n := last.Len()
	last.Queue("COMMIT")
	br := conn.SendBatch(ctx, last)
	for range n {
		if _, err = br.Exec(); err != nil {
			break
		}
	}
	var tag pgconn.CommandTag
	if err == nil {
		tag, err = br.Exec()
	}
	closeErr := br.Close()
	switch {
	case err == nil && tag.String() == "COMMIT":
		return nil // committed, whatever becomes of the connection after
	case err == nil && tag.String() == "ROLLBACK":
		return pgx.ErrTxCommitRollback
	case err == nil && closeErr != nil:
		err = closeErr
	case err == nil:
		err = fmt.Errorf("postgres: COMMIT answered %q", tag.String())
	}
	if notCommitted(err) {
		return err
	}
	return &AmbiguousCommitError{Err: err}
}

// pipelined is the Querier of a pipelined transaction: it finishes reading
// the first batch before running anything else on the connection.
type pipelined struct {
	br     pgx.BatchResults
	conn   *pgx.Conn
	closed bool
	err    error
}

func (p *pipelined) close() error {
	if !p.closed {
		p.closed, p.err = true, p.br.Close()
	}
	return p.err
}

func (p *pipelined) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	if err := p.close(); err != nil {
		return nil, err
	}
	return p.conn.Query(ctx, sql, args...)
}

func outcomeOf(err error) string {
	var amb *AmbiguousCommitError
	switch {
	case err == nil:
		return "commit"
	case errors.As(err, &amb):
		return "ambiguous"
	}
	return "rollback"
}

func retryable(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == sqlstateSerializationFailure || pgErr.Code == sqlstateDeadlockDetected)
}

// IsUniqueViolation reports whether err is a unique violation of constraint
// (any constraint when constraint is empty).
func IsUniqueViolation(err error, constraint string) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == SQLStateUniqueViolation &&
		(constraint == "" || pgErr.ConstraintName == constraint)
}

func millis(d time.Duration) string {
	if d <= 0 {
		return "0"
	}
	return fmt.Sprintf("%dms", d.Milliseconds())
}
