package integration

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/stockguard/stockguard/cmd/stockguard/app"
	"github.com/stockguard/stockguard/modules/inventory"
	invpg "github.com/stockguard/stockguard/modules/inventory/postgres"
	"github.com/stockguard/stockguard/modules/orders"
	ordpg "github.com/stockguard/stockguard/modules/orders/postgres"
	"github.com/stockguard/stockguard/platform/auth"
	"github.com/stockguard/stockguard/platform/config"
	"github.com/stockguard/stockguard/platform/postgres"
)

// Every migration applies on top of the one before it, and a second run
// applies nothing.
func TestMigrations_ApplyOneByOneAndOnlyOnce(t *testing.T) {
	all, err := postgres.Migrations()
	if err != nil || len(all) == 0 {
		t.Fatalf("Migrations() = %v, %v", all, err)
	}
	pool, err := postgres.Open(context.Background(), postgres.PoolConfig{URL: pg.NewDatabase(t), MaxConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	for _, m := range all {
		applied, err := postgres.MigrateTo(context.Background(), pool, m.Version)
		if err != nil {
			t.Fatalf("migration %04d_%s: %v", m.Version, m.Name, err)
		}
		if len(applied) != 1 || applied[0] != m.Version {
			t.Fatalf("migrating to %d applied %v", m.Version, applied)
		}
	}
	again, err := postgres.Migrate(context.Background(), pool)
	if err != nil || len(again) != 0 {
		t.Fatalf("second run applied %v, %v; want nothing", again, err)
	}
}

// The schema itself refuses oversell and broken conservation, whatever
// code writes to it.
func TestSchema_ConstraintsRefuseImpossibleStock(t *testing.T) {
	db := newRunner(t, defaultTx)
	items := invpg.NewItemStore(db)
	svc := inventory.NewService(items)
	it, err := svc.CreateItem(context.Background(), inventory.NewItem{SKU: "C-1", Name: "c", InitialStock: 5})
	if err != nil {
		t.Fatal(err)
	}
	for _, sql := range []string{
		`UPDATE items SET available = available - 6, sold = sold + 6 WHERE id = $1`, // oversell
		`UPDATE items SET sold = sold + 1 WHERE id = $1`,                            // units from nowhere
	} {
		if _, err := db.Pool().Exec(context.Background(), sql, it.ID); err == nil || !strings.Contains(err.Error(), "violates check constraint") {
			t.Fatalf("%s: error = %v, want a check constraint violation", sql, err)
		}
	}
}

// holdItemLock locks an item row from another session until release is called.
func holdItemLock(t *testing.T, dbURL, itemID string) (release func()) {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	tx, err := conn.Begin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(context.Background(), `SELECT 1 FROM items WHERE id = $1 FOR UPDATE`, itemID); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	release = func() {
		once.Do(func() {
			_ = tx.Rollback(context.Background())
			_ = conn.Close(context.Background())
		})
	}
	t.Cleanup(release)
	return release
}

// A purchase that cannot get its row lock in time answers unavailable
// (retryable) instead of waiting forever, and the server recovers.
func TestLocks_LockTimeoutAnswersStoreUnavailable(t *testing.T) {
	srv := startServer(t, postgresStore, func(c *config.Config) { c.LockTimeout = 150 * time.Millisecond })
	p := protocols[0]
	admin := p.dial(srv.base, srv.token(t, "ops", auth.RoleAdmin))
	alice := p.dial(srv.base, srv.token(t, "alice", auth.RoleCustomer))
	item := createItem(t, admin, "LOCKED", 5, 0)

	release := holdItemLock(t, srv.cfg.DatabaseURL, item.GetId())
	_, o := alice.PlaceOrder(context.Background(), buy(item.GetId(), 1))
	if o.Code != connect.CodeUnavailable || o.Reason != "STORE_UNAVAILABLE" {
		t.Fatalf("purchase of a locked item = %s, want unavailable/STORE_UNAVAILABLE", o)
	}
	release()
	if _, o := alice.PlaceOrder(context.Background(), buy(item.GetId(), 1)); o.Code != 0 {
		t.Fatalf("purchase after the lock is released = %s", o)
	}
	assertVerified(t, srv)
}

// A batch does not wait for an item another transaction holds locked: that
// item's orders come back ErrItemBusy, with nothing done for them, and the
// rest of the batch is placed.
func TestPlaceBatch_ItemLockedElsewhereIsLeftOutAsBusy(t *testing.T) {
	r := newKeyRace(t)
	free, err := inventory.NewService(r.items).CreateItem(context.Background(), inventory.NewItem{SKU: "FREE", Name: "f", InitialStock: 10})
	if err != nil {
		t.Fatal(err)
	}
	release := holdItemLock(t, r.dbURL, r.item.ID)
	held := func(customer string) orders.Order { return r.order(customer, "") }
	batch := []orders.Order{held("alice"), r.orderOf(free.ID, "bob", ""), held("carol"), r.orderOf(uuid.Must(uuid.NewV7()).String(), "dave", "")}
	results, err := r.store.PlaceBatch(context.Background(), batch, nil)
	if err != nil || len(results) != len(batch) {
		t.Fatalf("PlaceBatch = %v, %v", results, err)
	}
	for _, i := range []int{0, 2} {
		if !errors.Is(results[i].Err, orders.ErrItemBusy) {
			t.Fatalf("order %d, of the locked item = %+v; want ErrItemBusy", i, results[i])
		}
	}
	if results[1].Err != nil {
		t.Fatalf("order of the free item = %+v; want placed", results[1])
	}
	if !errors.Is(results[3].Err, inventory.ErrItemNotFound) {
		t.Fatalf("order of an unknown item = %+v; want ErrItemNotFound", results[3])
	}
	release()
	if got, err := r.items.GetItem(context.Background(), r.item.ID); err != nil || got.Sold != 0 || got.Available != 10 {
		t.Fatalf("locked item = %+v, %v; want untouched", got, err)
	}
	if got, err := r.items.GetItem(context.Background(), free.ID); err != nil || got.Sold != 1 {
		t.Fatalf("free item = %+v, %v; want 1 sold", got, err)
	}
	again, err := r.store.PlaceBatch(context.Background(), []orders.Order{batch[0], batch[2]}, nil)
	if err != nil || again[0].Err != nil || again[1].Err != nil {
		t.Fatalf("the busy orders placed again after the lock was released = %+v, %v", again, err)
	}
}

// With every item in one lane, a purchase of an item locked elsewhere waits
// for the lock without holding up purchases of other items.
func TestLocks_LockedItemHoldsUpOnlyItsOwnPurchases(t *testing.T) {
	srv := startServer(t, postgresStore, func(c *config.Config) {
		c.CoalesceLanes = 1
		c.LockTimeout = 30 * time.Second
	})
	p := protocols[0]
	admin := p.dial(srv.base, srv.token(t, "ops", auth.RoleAdmin))
	alice := p.dial(srv.base, srv.token(t, "alice", auth.RoleCustomer))
	locked := createItem(t, admin, "HELD", 5, 0)
	free := createItem(t, admin, "FREE", 5, 0)
	release := holdItemLock(t, srv.cfg.DatabaseURL, locked.GetId())

	heldDone := make(chan outcome, 1)
	go func() {
		_, o := alice.PlaceOrder(context.Background(), buy(locked.GetId(), 1))
		heldDone <- o
	}()
	waitForLockWaiter(t, srv.cfg.DatabaseURL, "locktype = 'transactionid'")
	for i := range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		_, o := alice.PlaceOrder(ctx, buy(free.GetId(), 1))
		cancel()
		if o.Code != 0 {
			t.Fatalf("purchase %d of another item while one is locked = %s", i, o)
		}
	}
	select {
	case o := <-heldDone:
		t.Fatalf("the purchase of the locked item ended while the lock was held: %s", o)
	default:
	}
	release()
	if o := <-heldDone; o.Code != 0 {
		t.Fatalf("purchase of the locked item after release = %s", o)
	}
	if got, _ := alice.GetItem(context.Background(), locked.GetId()); got.GetSold() != 1 {
		t.Fatalf("locked item sold = %d, want 1", got.GetSold())
	}
	assertVerified(t, srv)
}

// waitForLockWaiter waits, for up to 20 s, until a session waits for a
// lock that matches where (a condition on pg_locks, with args).
func waitForLockWaiter(t *testing.T, dbURL, where string, args ...any) {
	t.Helper()
	conn, err := pgxConnect(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close(context.Background()) }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var waiting int
		if err := conn.QueryRow(context.Background(), `SELECT count(*) FROM pg_locks WHERE NOT granted AND `+where, args...).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no session waited for a lock (%s) within 20 s", where)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A client deadline reaches the database: the call ends when the client
// gives up, not when the lock timeout would, and the pool stays healthy.
func TestLocks_ClientDeadlineStopsTheDatabaseWork(t *testing.T) {
	srv := startServer(t, postgresStore, func(c *config.Config) {
		c.LockTimeout = 30 * time.Second
		c.StatementTimeout = 60 * time.Second
		c.DBMaxConns = 4
	})
	p := protocols[0]
	admin := p.dial(srv.base, srv.token(t, "ops", auth.RoleAdmin))
	alice := p.dial(srv.base, srv.token(t, "alice", auth.RoleCustomer))
	item := createItem(t, admin, "SLOW", 50, 0)
	release := holdItemLock(t, srv.cfg.DatabaseURL, item.GetId())

	// More cancelled calls than the pool has connections: if cancellation
	// left connections busy or broken, the calls after it would fail.
	for range 8 {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		began := time.Now()
		_, o := alice.PlaceOrder(ctx, buy(item.GetId(), 1))
		cancel()
		if o.Code != connect.CodeDeadlineExceeded && o.Code != connect.CodeCanceled {
			t.Fatalf("call past its deadline = %s", o)
		}
		if waited := time.Since(began); waited > 10*time.Second {
			t.Fatalf("call returned after %s; the deadline did not stop it", waited)
		}
	}
	release()
	for i := range 8 {
		if _, o := alice.PlaceOrder(context.Background(), buy(item.GetId(), 1)); o.Code != 0 {
			t.Fatalf("purchase %d after cancellations = %s", i, o)
		}
	}
	got, _ := alice.GetItem(context.Background(), item.GetId())
	if got.GetSold() != 8 {
		t.Fatalf("sold = %d, want 8: a cancelled call must not have bought", got.GetSold())
	}
	assertVerified(t, srv)
}

// Transactions that deadlock are retried whole; callers see success.
func TestRunner_RetriesDeadlocks(t *testing.T) {
	db := newRunner(t, postgres.TxConfig{LockTimeout: 10 * time.Second, StatementTimeout: 20 * time.Second, MaxAttempts: 5})
	ctx := context.Background()
	if _, err := db.Pool().Exec(ctx, `CREATE TABLE pair (id int PRIMARY KEY, n int NOT NULL); INSERT INTO pair VALUES (1, 0), (2, 0)`); err != nil {
		t.Fatal(err)
	}
	var attempts sync.Map
	both := make(chan struct{})
	var ready sync.WaitGroup
	ready.Add(2)
	run := func(first, second int) error {
		tries := 0
		return db.InTx(ctx, func(tx pgx.Tx) error {
			tries++
			attempts.Store(first, tries)
			if _, err := tx.Exec(ctx, `UPDATE pair SET n = n + 1 WHERE id = $1`, first); err != nil {
				return err
			}
			if tries == 1 {
				ready.Done()
				<-both // both hold their first lock: the second UPDATEs must deadlock
			}
			_, err := tx.Exec(ctx, `UPDATE pair SET n = n + 1 WHERE id = $1`, second)
			return err
		})
	}
	go func() { ready.Wait(); close(both) }()
	errs := make(chan error, 2)
	go func() { errs <- run(1, 2) }()
	go func() { errs <- run(2, 1) }()
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatalf("InTx = %v, want success after retry", err)
		}
	}
	var n1, n2 int
	if err := db.Pool().QueryRow(ctx, `SELECT (SELECT n FROM pair WHERE id = 1), (SELECT n FROM pair WHERE id = 2)`).Scan(&n1, &n2); err != nil {
		t.Fatal(err)
	}
	if n1 != 2 || n2 != 2 {
		t.Fatalf("counters = %d, %d; want 2, 2 (each transaction applied once)", n1, n2)
	}
	a1, _ := attempts.Load(1)
	a2, _ := attempts.Load(2)
	if a1.(int)+a2.(int) != 3 {
		t.Fatalf("attempts = %v + %v, want one retry in all", a1, a2)
	}
}

// A pipelined transaction commits everything or nothing, whatever step
// fails, leaves its connection clean for the next caller, and reports a
// held lock as ErrTimeout.
func TestRunner_PipelinedTxIsAllOrNothing(t *testing.T) {
	db := newRunner(t, postgres.TxConfig{LockTimeout: 200 * time.Millisecond, StatementTimeout: 5 * time.Second, MaxAttempts: 3})
	ctx := context.Background()
	if _, err := db.Pool().Exec(ctx, `CREATE TABLE counter (id int PRIMARY KEY, n int NOT NULL CHECK (n < 100));
		CREATE TABLE log (n int NOT NULL); INSERT INTO counter VALUES (1, 0)`); err != nil {
		t.Fatal(err)
	}
	lockFirst := func(b *pgx.Batch) { b.Queue(`SELECT n FROM counter WHERE id = 1 FOR UPDATE`) }
	// add reads the locked count and writes count+delta and a log row.
	add := func(delta int) func(br pgx.BatchResults, q postgres.Querier) (*pgx.Batch, error) {
		return func(br pgx.BatchResults, q postgres.Querier) (*pgx.Batch, error) {
			var n int
			if err := br.QueryRow().Scan(&n); err != nil {
				return nil, err
			}
			var last pgx.Batch
			last.Queue(`INSERT INTO log VALUES ($1)`, n+delta)
			last.Queue(`UPDATE counter SET n = $1 WHERE id = 1`, n+delta)
			return &last, nil
		}
	}
	state := func() (n, logged int) {
		t.Helper()
		if err := db.Pool().QueryRow(ctx, `SELECT (SELECT n FROM counter), (SELECT count(*) FROM log)`).Scan(&n, &logged); err != nil {
			t.Fatal(err)
		}
		return n, logged
	}

	if err := db.InTxPipelined(ctx, lockFirst, add(5)); err != nil {
		t.Fatalf("commit: %v", err)
	}
	if n, logged := state(); n != 5 || logged != 1 {
		t.Fatalf("after commit: n=%d, log rows=%d; want 5, 1", n, logged)
	}

	// The server refuses the last statement: the INSERT before it, sent in
	// the same round trip, is rolled back with it.
	err := db.InTxPipelined(ctx, lockFirst, add(200))
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "23514" {
		t.Fatalf("check violation in the last batch = %v, want SQLSTATE 23514", err)
	}
	var amb *postgres.AmbiguousCommitError
	if errors.As(err, &amb) {
		t.Fatalf("a refusal from the server is not ambiguous: %v", err)
	}
	if n, logged := state(); n != 5 || logged != 1 {
		t.Fatalf("after a refused batch: n=%d, log rows=%d; want 5, 1", n, logged)
	}

	// fn's own error rolls back too, and nothing of the last batch is sent.
	boom := errors.New("boom")
	if err := db.InTxPipelined(ctx, lockFirst, func(br pgx.BatchResults, q postgres.Querier) (*pgx.Batch, error) {
		if _, err := q.Query(ctx, `INSERT INTO log VALUES (-1)`); err != nil {
			return nil, err
		}
		return nil, boom
	}); !errors.Is(err, boom) {
		t.Fatalf("fn error = %v, want boom", err)
	}
	if n, logged := state(); n != 5 || logged != 1 {
		t.Fatalf("after fn failed: n=%d, log rows=%d; want 5, 1", n, logged)
	}

	// Another session holds the row: the lock timeout set in the first
	// round trip applies to the FOR UPDATE in it.
	holder, err := db.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := holder.Exec(ctx, `SELECT 1 FROM counter WHERE id = 1 FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	err = db.InTxPipelined(ctx, lockFirst, add(1))
	_ = holder.Rollback(ctx)
	if !errors.Is(err, postgres.ErrTimeout) {
		t.Fatalf("locked row = %v, want ErrTimeout", err)
	}
	if waited := time.Since(began); waited > 3*time.Second {
		t.Fatalf("waited %s for a 200ms lock timeout", waited)
	}

	// Every connection went back idle: many transactions after the
	// failures, on every pooled connection, all commit. They queue for the
	// one row, so they get a lock timeout no busy machine can reach.
	patient := postgres.NewRunner(db.Pool(), postgres.TxConfig{LockTimeout: time.Minute, StatementTimeout: 2 * time.Minute, MaxAttempts: 3})
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- patient.InTxPipelined(ctx, lockFirst, add(1))
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("transaction after failures: %v", err)
		}
	}
	if n, logged := state(); n != 45 || logged != 41 {
		t.Fatalf("after 40 more: n=%d, log rows=%d; want 45, 41", n, logged)
	}
}

// Creating items keeps the table's statistics current: without it, the
// plans PostgreSQL keeps for foreign-key checks, made while the table was
// tiny, scan every item for every ledger row and order line until
// autovacuum analyzes it.
func TestItems_CreationRefreshesStatistics(t *testing.T) {
	db := newRunner(t, defaultTx)
	ctx := context.Background()
	svc := inventory.NewService(invpg.NewItemStore(db))
	stats := func() (analyzed bool, estimate float64) {
		t.Helper()
		if err := db.Pool().QueryRow(ctx, `SELECT s.last_analyze IS NOT NULL, c.reltuples FROM pg_stat_user_tables s
			JOIN pg_class c ON c.oid = s.relid WHERE s.relname = 'items'`).Scan(&analyzed, &estimate); err != nil {
			t.Fatal(err)
		}
		return analyzed, estimate
	}
	for i := range 130 {
		if _, err := svc.CreateItem(ctx, inventory.NewItem{SKU: fmt.Sprintf("STATS-%d", i), Name: "s", InitialStock: 1}); err != nil {
			t.Fatal(err)
		}
		if i == 62 { // 63 created: not yet
			if analyzed, _ := stats(); analyzed {
				t.Fatal("items analyzed before the 64th creation")
			}
		}
	}
	if analyzed, estimate := stats(); !analyzed || estimate < 128 {
		t.Fatalf("after 130 creations: analyzed=%v, estimated rows=%v; want analyzed at 128 rows or more", analyzed, estimate)
	}
}

// `stockguard verify` exits non-zero with a report when the books do not
// balance.
func TestVerify_ReportsLedgerMismatch(t *testing.T) {
	srv := startServer(t, postgresStore)
	admin := protocols[0].dial(srv.base, srv.token(t, "ops", auth.RoleAdmin))
	alice := protocols[0].dial(srv.base, srv.token(t, "alice", auth.RoleCustomer))
	item := createItem(t, admin, "AUDIT", 10, 0)
	if _, o := alice.PlaceOrder(context.Background(), buy(item.GetId(), 3)); o.Code != 0 {
		t.Fatal(o)
	}
	assertVerified(t, srv)

	conn, err := pgx.Connect(context.Background(), srv.cfg.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(context.Background(), `DELETE FROM stock_ledger WHERE kind = 'purchase'`); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	ok, err := app.Verify(context.Background(), srv.cfg, zap.NewNop(), &out)
	if err != nil {
		t.Fatal(err)
	}
	if ok || !strings.Contains(out.String(), "MISMATCH item "+item.GetId()) || !strings.Contains(out.String(), "FAILED") {
		t.Fatalf("verify after losing ledger rows: ok=%v\n%s", ok, out.String())
	}
}

// commitEater is a TCP proxy to PostgreSQL that, once armed, forwards a
// COMMIT to the server and then cuts the connection before the answer
// returns: the client cannot know whether the transaction committed. It
// reads the frontend protocol, so it finds a COMMIT sent as a simple query
// or executed from a prepared statement, alone or pipelined behind other
// statements, and not one that is only being prepared.
type commitEater struct {
	ln      net.Listener
	target  string
	mu      sync.Mutex
	armed   bool
	forward bool // send the armed COMMIT on to the server, or drop it
	eaten   int
}

func newCommitEater(t *testing.T, target string) *commitEater {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &commitEater{ln: ln, target: target}
	t.Cleanup(func() { ln.Close() })
	go p.serve()
	return p
}

func (p *commitEater) arm(forward bool) {
	p.mu.Lock()
	p.armed, p.forward = true, forward
	p.mu.Unlock()
}

func (p *commitEater) eatenCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.eaten
}

func (p *commitEater) serve() {
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		server, err := net.Dial("tcp", p.target)
		if err != nil {
			client.Close()
			continue
		}
		var mu sync.Mutex
		muted := false
		// server -> client, until the connection is muted.
		go func() {
			defer client.Close()
			buf := make([]byte, 32<<10)
			for {
				n, err := server.Read(buf)
				mu.Lock()
				drop := muted
				mu.Unlock()
				if drop {
					return
				}
				if n > 0 {
					if _, werr := client.Write(buf[:n]); werr != nil {
						return
					}
				}
				if err != nil {
					return
				}
			}
		}()
		// client -> server, muting the answer path before a COMMIT goes out.
		go func() {
			defer server.Close()
			defer client.Close()
			buf := make([]byte, 32<<10)
			var fe frontendStream
			for {
				n, err := client.Read(buf)
				if n > 0 {
					commits := fe.feed(buf[:n])
					p.mu.Lock()
					eat := p.armed && commits
					forward := p.forward
					if eat {
						p.armed = false
						p.eaten++
					}
					p.mu.Unlock()
					if eat {
						mu.Lock()
						muted = true
						mu.Unlock()
					}
					if eat && !forward {
						return // the server sees the session end mid-transaction and rolls back
					}
					if _, werr := server.Write(buf[:n]); werr != nil {
						return
					}
					if eat {
						// Give the server time to commit, then cut the client off.
						time.Sleep(200 * time.Millisecond)
						return
					}
				}
				if err != nil {
					return
				}
			}
		}()
	}
}

// frontendStream follows the messages a PostgreSQL client sends, enough to
// tell when one executes a COMMIT.
type frontendStream struct {
	pending   []byte
	started   bool            // the startup message has passed
	statement map[string]bool // prepared statement name -> it is a COMMIT
	portal    map[string]bool // bound portal name -> it runs a COMMIT
}

// feed takes the next bytes from the client and reports whether they
// complete a message that executes a COMMIT.
func (f *frontendStream) feed(b []byte) (commits bool) {
	if f.statement == nil {
		f.statement, f.portal = map[string]bool{}, map[string]bool{}
	}
	f.pending = append(f.pending, b...)
	for {
		if !f.started {
			// Untyped: length, then a code. SSL and GSS requests come before
			// the startup message proper.
			if len(f.pending) < 8 {
				return commits
			}
			n := int(binary.BigEndian.Uint32(f.pending))
			if len(f.pending) < n {
				return commits
			}
			code := binary.BigEndian.Uint32(f.pending[4:])
			f.started = code != 80877103 && code != 80877104
			f.pending = f.pending[n:]
			continue
		}
		if len(f.pending) < 5 {
			return commits
		}
		n := 1 + int(binary.BigEndian.Uint32(f.pending[1:]))
		if len(f.pending) < n {
			return commits
		}
		kind, body := f.pending[0], f.pending[5:n]
		fields := bytes.SplitN(body, []byte{0}, 3)
		isCommit := func(sql []byte) bool { return bytes.Contains(bytes.ToLower(sql), []byte("commit")) }
		switch {
		case kind == 'Q' && len(fields) > 0: // query
			commits = commits || isCommit(fields[0])
		case kind == 'P' && len(fields) > 1: // parse: name, query
			f.statement[string(fields[0])] = isCommit(fields[1])
		case kind == 'B' && len(fields) > 1: // bind: portal, statement
			f.portal[string(fields[0])] = f.statement[string(fields[1])]
		case kind == 'E' && len(fields) > 0: // execute: portal
			commits = commits || f.portal[string(fields[0])]
		}
		f.pending = f.pending[n:]
	}
}

// ambiguousPaths are the two ways a purchase reaches PostgreSQL: its own
// transaction (InTx, COMMIT sent alone) and the coalescer's batch
// (InTxPipelined, COMMIT pipelined behind the writes).
var ambiguousPaths = []struct {
	name     string
	coalesce bool
}{{"own transaction", false}, {"coalesced batch", true}}

// ambiguousSetup returns stores whose connections pass through a commitEater.
func ambiguousSetup(t *testing.T, coalesce bool) (*commitEater, *invpg.ItemStore, *orders.Service, inventory.Item) {
	t.Helper()
	dbURL := pg.NewMigratedDatabase(t)
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := newCommitEater(t, u.Host)
	u.Host = proxy.ln.Addr().String()
	pool, err := postgres.Open(context.Background(), postgres.PoolConfig{URL: u.String(), MaxConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	db := postgres.NewRunner(pool, defaultTx)
	items := invpg.NewItemStore(db)
	it, err := inventory.NewService(items).CreateItem(context.Background(), inventory.NewItem{SKU: "AMB", Name: "a", InitialStock: 5})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	store := ordpg.NewOrderStore(db)
	svc := orders.NewService(store)
	if coalesce {
		c := orders.NewCoalescer(store, orders.CoalescerConfig{MaxBatch: 8, QueueSize: 8})
		t.Cleanup(func() { _ = c.Stop(context.Background()) })
		svc = svc.WithCoalescer(c)
	}
	return proxy, items, svc, it
}

// A purchase whose COMMIT answer is lost is resolved by looking up its
// order id: the caller gets its order, and the stock moved exactly once.
func TestAmbiguousCommit_LandedCommitIsResolvedByOrderID(t *testing.T) {
	for _, path := range ambiguousPaths {
		t.Run(path.name, func(t *testing.T) {
			proxy, items, svc, it := ambiguousSetup(t, path.coalesce)
			proxy.arm(true)
			placed, err := svc.PlaceOrder(context.Background(), orders.Caller{CustomerID: "alice"},
				orders.PlaceRequest{Lines: []orders.Line{{ItemID: it.ID, Quantity: 2}}, IdempotencyKey: "amb-1"})
			if n := proxy.eatenCount(); n != 1 {
				t.Fatalf("the proxy ate %d commits; the test did not exercise a lost commit", n)
			}
			if err != nil {
				t.Fatalf("PlaceOrder after a lost COMMIT answer = %v; want the order, found by its id", err)
			}
			got, err := items.GetItem(context.Background(), it.ID)
			if err != nil || got.Sold != 2 || got.Available != 3 {
				t.Fatalf("item = %+v, %v; want exactly one purchase of 2", got, err)
			}
			// A client retry with the same key returns the same order, buying nothing more.
			again, err := svc.PlaceOrder(context.Background(), orders.Caller{CustomerID: "alice"},
				orders.PlaceRequest{Lines: []orders.Line{{ItemID: it.ID, Quantity: 2}}, IdempotencyKey: "amb-1"})
			if err != nil || again.ID != placed.ID {
				t.Fatalf("retry = %+v, %v; want the original order %s", again, err, placed.ID)
			}
			report, err := items.Audit(context.Background())
			if err != nil || !report.OK() {
				t.Fatalf("audit = %+v, %v", report, err)
			}
		})
	}
}

// A COMMIT that never reached the server leaves the outcome unknown to the
// client: it is told to retry with the same key, and that retry buys once.
func TestAmbiguousCommit_LostCommitIsRetriedSafelyWithTheKey(t *testing.T) {
	for _, path := range ambiguousPaths {
		t.Run(path.name, func(t *testing.T) {
			proxy, items, svc, it := ambiguousSetup(t, path.coalesce)
			proxy.arm(false)
			req := orders.PlaceRequest{Lines: []orders.Line{{ItemID: it.ID, Quantity: 2}}, IdempotencyKey: "amb-2"}
			_, err := svc.PlaceOrder(context.Background(), orders.Caller{CustomerID: "alice"}, req)
			if n := proxy.eatenCount(); n != 1 {
				t.Fatalf("the proxy ate %d commits; the test did not exercise a lost commit", n)
			}
			if !errors.Is(err, orders.ErrUnavailable) {
				t.Fatalf("PlaceOrder after a lost COMMIT = %v, want ErrUnavailable (retry with the same key)", err)
			}
			got, err := items.GetItem(context.Background(), it.ID)
			if err != nil || got.Sold != 0 || got.Available != 5 {
				t.Fatalf("item = %+v, %v; the rolled-back purchase must not show", got, err)
			}
			placed, err := svc.PlaceOrder(context.Background(), orders.Caller{CustomerID: "alice"}, req)
			if err != nil {
				t.Fatalf("retry = %v", err)
			}
			if again, err := svc.PlaceOrder(context.Background(), orders.Caller{CustomerID: "alice"}, req); err != nil || again.ID != placed.ID {
				t.Fatalf("second retry = %+v, %v; want %s", again, err, placed.ID)
			}
			if got, _ := items.GetItem(context.Background(), it.ID); got.Sold != 2 {
				t.Fatalf("sold = %d, want 2", got.Sold)
			}
		})
	}
}

func pgxConnect(url string) (*pgx.Conn, error) { return pgx.Connect(context.Background(), url) }

// keyRace sets up a batch that loses the race for idempotency keys: items
// and a store whose transactions are counted, and rivals, each a
// transaction that inserted an order under a key of the batch and is held
// open, so the batch's lookup misses it and the batch's insert waits on it.
type keyRace struct {
	store   *ordpg.OrderStore
	items   *invpg.ItemStore
	item    inventory.Item
	reg     *prometheus.Registry
	dbURL   string
	rivalTx []pgx.Tx
	xids    []string
}

func newKeyRace(t *testing.T) *keyRace {
	t.Helper()
	r := &keyRace{dbURL: pg.NewMigratedDatabase(t), reg: prometheus.NewRegistry()}
	pool, err := postgres.Open(context.Background(), postgres.PoolConfig{URL: r.dbURL, MaxConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	db := postgres.NewRunner(pool, defaultTx).WithMetrics(postgres.NewMetrics(r.reg))
	r.items = invpg.NewItemStore(db)
	r.store = ordpg.NewOrderStore(db)
	r.item, err = inventory.NewService(r.items).CreateItem(context.Background(), inventory.NewItem{SKU: "RACE", Name: "r", InitialStock: 10})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// rival opens a transaction that uses customer's key for another request
// and leaves it uncommitted.
func (r *keyRace) rival(t *testing.T, customer, key string) {
	t.Helper()
	conn, err := pgxConnect(r.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	tx, err := conn.Begin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var xid string
	if err := tx.QueryRow(context.Background(), `INSERT INTO orders (id, customer_id, status, idempotency_key, request_hash, create_time, update_time)
		VALUES (gen_random_uuid(), $1, 2, $2, 'another request', now(), now()) RETURNING pg_current_xact_id()::text`, customer, key).Scan(&xid); err != nil {
		t.Fatal(err)
	}
	r.rivalTx, r.xids = append(r.rivalTx, tx), append(r.xids, xid)
}

// commitRivalOnceWaitedOn waits until a transaction waits for rival i to
// end (the batch's insert met its key), then commits it.
func (r *keyRace) commitRivalOnceWaitedOn(t *testing.T, i int) {
	t.Helper()
	waitForLockWaiter(t, r.dbURL, "locktype = 'transactionid' AND transactionid::text = $1", r.xids[i])
	if err := r.rivalTx[i].Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// placeWhileRivalsCommit places batch, committing each rival, in the order
// they were opened, once the batch waits on it.
func (r *keyRace) placeWhileRivalsCommit(t *testing.T, batch []orders.Order) []orders.BatchResult {
	t.Helper()
	done := make(chan struct{})
	var results []orders.BatchResult
	var err error
	go func() {
		defer close(done)
		results, err = r.store.PlaceBatch(context.Background(), batch, nil)
	}()
	for i := range r.rivalTx {
		r.commitRivalOnceWaitedOn(t, i)
	}
	<-done
	if err != nil || len(results) != len(batch) {
		t.Fatalf("PlaceBatch = %v, %v", results, err)
	}
	return results
}

func (r *keyRace) order(customer, key string) orders.Order {
	return r.orderOf(r.item.ID, customer, key)
}

func (r *keyRace) orderOf(itemID, customer, key string) orders.Order {
	now := time.Now().UTC().Truncate(time.Microsecond)
	req := orders.PlaceRequest{Lines: []orders.Line{{ItemID: itemID, Quantity: 1}}, IdempotencyKey: key}
	return orders.Order{ID: uuid.Must(uuid.NewV7()).String(), CustomerID: customer, Status: orders.StatusConfirmed,
		Lines: req.Lines, IdempotencyKey: key, RequestHash: req.Hash(), CreateTime: now, UpdateTime: now}
}

func (r *keyRace) commits(t *testing.T) uint64 {
	t.Helper()
	families, err := r.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "stockguard_db_transaction_duration_seconds" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "outcome" && l.GetValue() == "commit" {
					return m.GetHistogram().GetSampleCount()
				}
			}
		}
	}
	return 0
}

// A batch whose key a concurrent order wins after the lookup rolls back
// whole and is placed again: that order gets the key's outcome (here the
// key was used for another request), and the rest of the batch still
// commits as one transaction.
func TestPlaceBatch_KeyWonByAConcurrentOrderIsPlacedAgainAsOneBatch(t *testing.T) {
	r := newKeyRace(t)
	r.rival(t, "alice", "k-alice")
	batch := []orders.Order{r.order("alice", "k-alice"), r.order("bob", "k-bob"), r.order("carol", "k-carol")}
	before := r.commits(t)
	results := r.placeWhileRivalsCommit(t, batch)
	if !errors.Is(results[0].Err, orders.ErrIdempotencyKeyReused) {
		t.Fatalf("alice's order = %+v; want ErrIdempotencyKeyReused, the rival used her key first", results[0])
	}
	for _, res := range results[1:] {
		if res.Err != nil || res.Replayed {
			t.Fatalf("result = %+v; want placed", res)
		}
	}
	if n := r.commits(t) - before; n != 1 {
		t.Fatalf("%d transactions committed; want bob's and carol's orders in one", n)
	}
	if got, err := r.items.GetItem(context.Background(), r.item.ID); err != nil || got.Sold != 2 || got.Available != 8 {
		t.Fatalf("item = %+v, %v; want 2 sold", got, err)
	}
}

// If the key race is lost again on the second try, the orders go one by
// one, which settles any number of races.
func TestPlaceBatch_KeyRaceLostTwiceFallsBackToOneByOne(t *testing.T) {
	r := newKeyRace(t)
	r.rival(t, "alice", "k-alice")
	r.rival(t, "carol", "k-carol")
	batch := []orders.Order{r.order("alice", "k-alice"), r.order("bob", "k-bob"), r.order("carol", "k-carol")}
	// The first try meets alice's rival; the second, carol's.
	results := r.placeWhileRivalsCommit(t, batch)
	for _, i := range []int{0, 2} {
		if !errors.Is(results[i].Err, orders.ErrIdempotencyKeyReused) {
			t.Fatalf("order %d = %+v; want ErrIdempotencyKeyReused", i, results[i])
		}
	}
	if results[1].Err != nil || results[1].Replayed {
		t.Fatalf("bob's order = %+v; want placed", results[1])
	}
	if got, err := r.items.GetItem(context.Background(), r.item.ID); err != nil || got.Sold != 1 || got.Available != 9 {
		t.Fatalf("item = %+v, %v; want 1 sold", got, err)
	}
}

// A statement that changes many items announces them in notices of at most
// postgres.StockItemsPerNotice items, each under PostgreSQL's 8,000-byte
// payload limit even with the longest values.
func TestNotifyStock_ManyItemsGoInNoticesUnderThePayloadLimit(t *testing.T) {
	dbURL := pg.NewMigratedDatabase(t)
	listener, err := pgxConnect(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = listener.Close(context.Background()) }()
	if _, err := listener.Exec(context.Background(), "LISTEN "+postgres.StockChannel); err != nil {
		t.Fatal(err)
	}
	writer, err := pgxConnect(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = writer.Close(context.Background()) }()
	const items = 2*postgres.StockItemsPerNotice + 20
	tp := "00-" + strings.Repeat("a", 32) + "-" + strings.Repeat("b", 16) + "-01"
	if _, err := writer.Exec(context.Background(), `WITH changed AS (
		SELECT gen_random_uuid() AS id, 2147483647 AS available, 2147483647 AS reserved, 2147483647 AS sold,
		       9223372036854775807::bigint AS version
		FROM generate_series(1, $2)) `+postgres.NotifyStockSQL("$1"), tp, items); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	var sizes []int
	for len(seen) < items {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		n, err := listener.WaitForNotification(ctx)
		cancel()
		if err != nil {
			t.Fatalf("after %d notices and %d items: %v", len(sizes), len(seen), err)
		}
		sizes = append(sizes, len(n.Payload))
		notice, err := postgres.ParseStockNotice(n.Payload)
		if err != nil || notice.TraceParent != tp || len(notice.Items) > postgres.StockItemsPerNotice {
			t.Fatalf("notice %d: %d items, traceparent %q, %v", len(sizes), len(notice.Items), notice.TraceParent, err)
		}
		for _, it := range notice.Items {
			if it.Available != 2147483647 || it.Version != 9223372036854775807 {
				t.Fatalf("item %+v; want the values sent", it)
			}
			seen[it.ItemID] = true
		}
	}
	if len(sizes) != 3 || slices.Max(sizes) >= 8000 {
		t.Fatalf("notice sizes %v; want 3 notices, each under 8,000 bytes", sizes)
	}
	t.Logf("notice sizes: %v bytes", sizes)
}
