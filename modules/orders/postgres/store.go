// Package postgres is the PostgreSQL adapter of the orders Store.
//
// Every transaction that moves stock locks the item rows it touches with
// SELECT ... FOR UPDATE in ascending id order, so concurrent multi-line
// orders cannot deadlock each other, and transitions of an existing order
// lock the order row first, so a confirm racing the sweeper has one winner.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stockguard/stockguard/modules/inventory"
	"github.com/stockguard/stockguard/modules/orders"
	pg "github.com/stockguard/stockguard/platform/postgres"
)

// OrderStore is the PostgreSQL orders store.
type OrderStore struct {
	db *pg.Runner
}

// NewOrderStore returns a store that runs its transactions through db.
func NewOrderStore(db *pg.Runner) *OrderStore {
	return &OrderStore{db: db}
}

// lockedItem is an item row read under FOR UPDATE.
type lockedItem struct {
	id             string
	available      int32
	reserved       int32
	sold           int32
	maxPerCustomer int32
}

// lockItems locks the rows of ids (sorted, unique) in ascending id order,
// recording the wait, and sets *lockedAt to when it got them.
func lockItems(ctx context.Context, tx pgx.Tx, m *pg.Metrics, lockedAt *time.Time, ids []string) (map[string]lockedItem, error) {
	out, err := lockedRows(ctx, tx, m, lockedAt, ids)
	if err != nil {
		return nil, err
	}
	for _, id := range ids {
		if _, ok := out[id]; !ok {
			return nil, fmt.Errorf("%w: %s", inventory.ErrItemNotFound, id)
		}
	}
	return out, nil
}

// lockSQL locks the item rows of $1 that exist, in ascending id order.
const lockSQL = `SELECT id::text, available, reserved, sold, max_per_customer
	FROM items WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE`

// lockFreeSQL is lockSQL for batches: rows another transaction holds are
// left out rather than waited for, so one busy item cannot stall a batch of
// many items. It waits for nothing, so it cannot deadlock either.
const lockFreeSQL = lockSQL + ` SKIP LOCKED`

// lockedRows locks the rows of ids that exist, in ascending id order.
func lockedRows(ctx context.Context, tx pgx.Tx, m *pg.Metrics, lockedAt *time.Time, ids []string) (map[string]lockedItem, error) {
	began := time.Now()
	rows, err := tx.Query(ctx, lockSQL, ids)
	if err != nil {
		return nil, err
	}
	return scanLocked(rows, m, began, lockedAt)
}

// scanLocked reads the rows of lockSQL, recording the wait since began and
// setting *lockedAt to when the locks were held.
func scanLocked(rows pgx.Rows, m *pg.Metrics, began time.Time, lockedAt *time.Time) (map[string]lockedItem, error) {
	out := map[string]lockedItem{}
	var it lockedItem
	_, err := pgx.ForEachRow(rows, []any{&it.id, &it.available, &it.reserved, &it.sold, &it.maxPerCustomer}, func() error {
		out[it.id] = it
		return nil
	})
	if err != nil {
		return nil, err
	}
	*lockedAt = time.Now()
	m.LockWait(lockedAt.Sub(began))
	return out, nil
}

// writes collects statements whose only answer is success or failure, so
// they reach the server together: one round trip however many there are.
// A failure stops the rest, and the transaction rolls back.
type writes struct{ b pgx.Batch }

func (w *writes) add(sql string, args ...any) { w.b.Queue(sql, args...) }

// send runs the collected statements in tx and returns the first error.
func (w *writes) send(ctx context.Context, tx pgx.Tx) error {
	if w.b.Len() == 0 {
		return nil
	}
	return tx.SendBatch(ctx, &w.b).Close()
}

// applyMovements adds to w the writes of moves to their items (one UPDATE
// for all) and to the ledger (one INSERT for all). Callers hold the item
// row locks.
func applyMovements(ctx context.Context, w *writes, moves []inventory.Movement, at time.Time) {
	n := len(moves)
	ids, orderIDs, kinds := make([]string, n), make([]string, n), make([]string, n)
	da, dr, ds := make([]int32, n), make([]int32, n), make([]int32, n)
	for i, m := range moves {
		ids[i], orderIDs[i], kinds[i] = m.ItemID, m.OrderID, string(m.Kind)
		da[i], dr[i], ds[i] = m.Available, m.Reserved, m.Sold
	}
	// Sum per item first: one item may move for several orders at once.
	// One UPDATE for every item, announcing each new level once (see
	// pg.StockChannel); the announcement is delivered only if we commit.
	w.add(`WITH changed AS (UPDATE items i
		SET available = i.available + d.da, reserved = i.reserved + d.dr, sold = i.sold + d.ds, version = i.version + 1
		FROM (SELECT id, sum(da)::int AS da, sum(dr)::int AS dr, sum(ds)::int AS ds
		      FROM unnest($1::uuid[], $2::int[], $3::int[], $4::int[]) AS m(id, da, dr, ds) GROUP BY id) d
		WHERE i.id = d.id
		RETURNING i.id, i.available, i.reserved, i.sold, i.version) `+pg.NotifyStockSQL("$5"), ids, da, dr, ds, pg.TraceParent(ctx))
	w.add(`INSERT INTO stock_ledger (item_id, order_id, kind, d_available, d_reserved, d_sold, create_time)
		SELECT id, NULLIF(oid, '')::uuid, kind, da, dr, ds, $7
		FROM unnest($1::uuid[], $2::text[], $3::text[], $4::int[], $5::int[], $6::int[]) AS m(id, oid, kind, da, dr, ds)`,
		ids, orderIDs, kinds, da, dr, ds, at)
}

// addHoldings adds to w the change of the per-customer counts of limited items.
func addHoldings(w *writes, customerID string, itemIDs []string, deltas []int32) {
	if len(itemIDs) == 0 {
		return
	}
	w.add(`INSERT INTO customer_holdings (customer_id, item_id, quantity)
		SELECT $1, id, q FROM unnest($2::uuid[], $3::int[]) AS h(id, q)
		ON CONFLICT (item_id, customer_id) DO UPDATE SET quantity = customer_holdings.quantity + EXCLUDED.quantity`,
		customerID, itemIDs, deltas)
}

// PlaceOrder implements orders.Store.
func (s *OrderStore) PlaceOrder(ctx context.Context, o orders.Order) (orders.Order, bool, error) {
	if o.IdempotencyKey != "" {
		// Cheap path for replays: no locks taken.
		if prior, found, err := s.byKey(ctx, o.CustomerID, o.IdempotencyKey); err != nil {
			return orders.Order{}, false, mapErr("place order", err)
		} else if found {
			return replay(prior, o)
		}
	}
	var lockedAt time.Time
	err := s.db.InTx(ctx, func(tx pgx.Tx) error { return placeInTx(ctx, tx, s.db.Metrics(), &lockedAt, o) })
	s.observeHold(lockedAt)
	var amb *pg.AmbiguousCommitError
	switch {
	case err == nil:
		return o, false, nil
	case errors.As(err, &amb):
		// The order id is ours, so its row tells whether COMMIT landed. If
		// it is not visible (yet), the outcome stays unknown: the caller is
		// told to retry with the same idempotency key, which cannot buy twice.
		got, gerr := s.GetOrder(context.WithoutCancel(ctx), o.ID)
		if gerr == nil {
			s.db.Metrics().AmbiguousCommit("committed")
			return got, false, nil
		}
		s.db.Metrics().AmbiguousCommit("unknown")
		return orders.Order{}, false, fmt.Errorf("place order: %w: commit outcome unknown, retry with the same idempotency key: %w", orders.ErrUnavailable, err)
	case o.IdempotencyKey != "" && pg.IsUniqueViolation(err, "orders_idempotency_key"):
		// A concurrent duplicate committed first; answer with its order.
		prior, found, kerr := s.byKey(ctx, o.CustomerID, o.IdempotencyKey)
		if kerr != nil || !found {
			return orders.Order{}, false, mapErr("place order", errors.Join(err, kerr))
		}
		return replay(prior, o)
	}
	return orders.Order{}, false, mapErr("place order", err)
}

func replay(prior, req orders.Order) (orders.Order, bool, error) {
	if prior.RequestHash != req.RequestHash {
		return orders.Order{}, false, orders.ErrIdempotencyKeyReused
	}
	return prior, true, nil
}

// observeHold records how long item locks taken at lockedAt were held; the
// transaction has just ended.
func (s *OrderStore) observeHold(lockedAt time.Time) {
	if !lockedAt.IsZero() {
		s.db.Metrics().LockHold(time.Since(lockedAt))
	}
}

func placeInTx(ctx context.Context, tx pgx.Tx, m *pg.Metrics, lockedAt *time.Time, o orders.Order) error {
	demand := orders.Demand(o.Lines)
	ids := make([]string, len(demand))
	for i, d := range demand {
		ids[i] = d.ItemID
	}
	items, err := lockItems(ctx, tx, m, lockedAt, ids)
	if err != nil {
		return err
	}
	var limited []string
	for _, d := range demand {
		it := items[d.ItemID]
		if it.available < d.Quantity {
			return &inventory.InsufficientStockError{ItemID: d.ItemID, Requested: d.Quantity, Available: it.available}
		}
		if it.maxPerCustomer > 0 {
			limited = append(limited, d.ItemID)
		}
	}
	var limitedQty []int32
	if len(limited) > 0 {
		held, err := holdings(ctx, tx, o.CustomerID, limited)
		if err != nil {
			return err
		}
		for _, d := range demand {
			it := items[d.ItemID]
			if it.maxPerCustomer == 0 {
				continue
			}
			if h := held[d.ItemID]; int64(h)+int64(d.Quantity) > int64(it.maxPerCustomer) {
				return &orders.LimitExceededError{ItemID: d.ItemID, Limit: it.maxPerCustomer, Held: h, Requested: d.Quantity}
			}
			limitedQty = append(limitedQty, d.Quantity)
		}
	}
	var w writes
	insertOrder(&w, o)
	moves := make([]inventory.Movement, len(demand))
	for i, d := range demand {
		moves[i] = inventory.Movement{ItemID: d.ItemID, OrderID: o.ID, Kind: inventory.MovementPurchase, Available: -d.Quantity, Sold: d.Quantity}
		if o.Status == orders.StatusPending {
			moves[i] = inventory.Movement{ItemID: d.ItemID, OrderID: o.ID, Kind: inventory.MovementHold, Available: -d.Quantity, Reserved: d.Quantity}
		}
	}
	applyMovements(ctx, &w, moves, o.CreateTime)
	addHoldings(&w, o.CustomerID, limited, limitedQty)
	return w.send(ctx, tx)
}

func holdings(ctx context.Context, tx pgx.Tx, customerID string, itemIDs []string) (map[string]int32, error) {
	rows, err := tx.Query(ctx, `SELECT item_id::text, quantity FROM customer_holdings
		WHERE customer_id = $1 AND item_id = ANY($2::uuid[])`, customerID, itemIDs)
	if err != nil {
		return nil, err
	}
	out := map[string]int32{}
	var id string
	var q int32
	_, err = pgx.ForEachRow(rows, []any{&id, &q}, func() error { out[id] = q; return nil })
	return out, err
}

// insertOrder adds to w the insert of o and its lines.
func insertOrder(w *writes, o orders.Order) {
	var key, expire any
	if o.IdempotencyKey != "" {
		key = o.IdempotencyKey
	}
	if !o.ExpireTime.IsZero() {
		expire = o.ExpireTime
	}
	w.add(`INSERT INTO orders (id, customer_id, status, idempotency_key, request_hash, create_time, update_time, expire_time)
		VALUES ($1, $2, $3, $4, $5, $6, $6, $7)`,
		o.ID, o.CustomerID, int16(o.Status), key, o.RequestHash, o.CreateTime, expire)
	itemIDs, qty, lineNo := make([]string, len(o.Lines)), make([]int32, len(o.Lines)), make([]int16, len(o.Lines))
	for i, l := range o.Lines {
		itemIDs[i], qty[i], lineNo[i] = l.ItemID, l.Quantity, int16(i)
	}
	w.add(`INSERT INTO order_lines (order_id, line_no, item_id, quantity)
		SELECT $1, n, id, q FROM unnest($2::smallint[], $3::uuid[], $4::int[]) AS l(n, id, q)`, o.ID, lineNo, itemIDs, qty)
}

const orderColumns = `o.id::text, o.customer_id, o.status, COALESCE(o.idempotency_key, ''), o.request_hash,
	o.create_time, o.update_time, o.expire_time,
	ARRAY(SELECT l.item_id::text FROM order_lines l WHERE l.order_id = o.id ORDER BY l.line_no),
	ARRAY(SELECT l.quantity FROM order_lines l WHERE l.order_id = o.id ORDER BY l.line_no)`

func scanOrder(row pgx.Row) (orders.Order, error) {
	var o orders.Order
	var status int16
	var expire *time.Time
	var itemIDs []string
	var qty []int32
	if err := row.Scan(&o.ID, &o.CustomerID, &status, &o.IdempotencyKey, &o.RequestHash,
		&o.CreateTime, &o.UpdateTime, &expire, &itemIDs, &qty); err != nil {
		return o, err
	}
	o.Status = orders.Status(status)
	if expire != nil {
		o.ExpireTime = *expire
	}
	o.Lines = make([]orders.Line, len(itemIDs))
	for i := range itemIDs {
		o.Lines[i] = orders.Line{ItemID: itemIDs[i], Quantity: qty[i]}
	}
	return o, nil
}

func (s *OrderStore) byKey(ctx context.Context, customerID, key string) (orders.Order, bool, error) {
	o, err := scanOrder(s.db.Pool().QueryRow(ctx, `SELECT `+orderColumns+` FROM orders o
		WHERE o.customer_id = $1 AND o.idempotency_key = $2`, customerID, key))
	if errors.Is(err, pgx.ErrNoRows) {
		return orders.Order{}, false, nil
	}
	return o, err == nil, err
}

// GetOrder implements orders.Store.
func (s *OrderStore) GetOrder(ctx context.Context, id string) (orders.Order, error) {
	o, err := scanOrder(s.db.Pool().QueryRow(ctx, `SELECT `+orderColumns+` FROM orders o WHERE o.id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return orders.Order{}, orders.ErrOrderNotFound
	}
	if err != nil {
		return orders.Order{}, mapErr("get order", err)
	}
	return o, nil
}

// ListOrders implements orders.Store. Each filter combination is served by
// an index range scan on (customer_id, id) or (item_id, order_id).
func (s *OrderStore) ListOrders(ctx context.Context, f orders.ListFilter) ([]orders.Order, error) {
	q := `SELECT ` + orderColumns + ` FROM orders o
		WHERE ($1::text IS NULL OR o.customer_id = $1) AND ($2::uuid IS NULL OR o.id < $2)`
	if f.ItemID != "" {
		q += ` AND o.id IN (SELECT l.order_id FROM order_lines l WHERE l.item_id = $4::uuid AND ($2::uuid IS NULL OR l.order_id < $2))`
	} else {
		q += ` AND $4::uuid IS NULL`
	}
	q += ` ORDER BY o.id DESC LIMIT $3`
	rows, err := s.db.Pool().Query(ctx, q, nullable(f.CustomerID), nullable(f.BeforeID), f.Limit, nullable(f.ItemID))
	if err != nil {
		return nil, mapErr("list orders", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (orders.Order, error) { return scanOrder(r) })
	if err != nil {
		return nil, mapErr("list orders", err)
	}
	return out, nil
}

// transition locks an order row (then its items) and lets decide choose
// what happens to it. decide returns the new status and the ledger kind, or
// a zero status to leave the order as it is.
func (s *OrderStore) transition(ctx context.Context, id string, now time.Time,
	decide func(o orders.Order) (orders.Transition, error),
) (orders.Order, error) {
	var out orders.Order
	var decideErr error
	var lockedAt time.Time
	defer func() { s.observeHold(lockedAt) }()
	err := s.db.InTx(ctx, func(tx pgx.Tx) error {
		decideErr = nil
		o, err := scanOrder(tx.QueryRow(ctx, `SELECT `+orderColumns+` FROM orders o WHERE o.id = $1 FOR UPDATE`, id))
		if errors.Is(err, pgx.ErrNoRows) {
			return orders.ErrOrderNotFound
		}
		if err != nil {
			return err
		}
		tr, derr := decide(o)
		if tr.Next == 0 {
			out, decideErr = o, derr
			return nil
		}
		o, err = moveOrder(ctx, tx, s.db.Metrics(), &lockedAt, []orders.Order{o}, tr.Next, tr.Kind, now)
		if err != nil {
			return err
		}
		out, decideErr = o, derr
		return nil
	})
	if err != nil {
		return orders.Order{}, mapErr("order transition", err)
	}
	return out, decideErr
}

// moveOrder moves every order in list (rows already locked) to status next,
// moving their stock with ledger rows of kind. It returns the last order.
func moveOrder(ctx context.Context, tx pgx.Tx, m *pg.Metrics, lockedAt *time.Time, list []orders.Order, next orders.Status, kind inventory.MovementKind, now time.Time) (orders.Order, error) {
	var moves []inventory.Movement
	itemSet := map[string]bool{}
	type hold struct {
		customer, item string
		qty            int32
	}
	var releasedHoldings []hold
	for _, o := range list {
		for _, d := range orders.Demand(o.Lines) {
			itemSet[d.ItemID] = true
			m, err := orders.Movement(kind, o.ID, d, now)
			if err != nil {
				return orders.Order{}, err
			}
			if orders.ReleasesHolding(kind) {
				releasedHoldings = append(releasedHoldings, hold{o.CustomerID, d.ItemID, d.Quantity})
			}
			moves = append(moves, m)
		}
	}
	ids := make([]string, 0, len(itemSet))
	for id := range itemSet {
		ids = append(ids, id)
	}
	ids = orders.SortedIDs(ids)
	items, err := lockItems(ctx, tx, m, lockedAt, ids)
	if err != nil {
		return orders.Order{}, err
	}
	var w writes
	applyMovements(ctx, &w, moves, now)
	for _, h := range releasedHoldings {
		if items[h.item].maxPerCustomer == 0 {
			continue
		}
		w.add(`UPDATE customer_holdings SET quantity = quantity - $3
			WHERE item_id = $1 AND customer_id = $2`, h.item, h.customer, h.qty)
	}
	orderIDs := make([]string, len(list))
	for i, o := range list {
		orderIDs[i] = o.ID
	}
	w.add(`UPDATE orders SET status = $2, update_time = $3 WHERE id = ANY($1::uuid[])`, orderIDs, int16(next), now)
	if err := w.send(ctx, tx); err != nil {
		return orders.Order{}, err
	}
	last := list[len(list)-1]
	last.Status, last.UpdateTime = next, now
	return last, nil
}

// ConfirmOrder implements orders.Store.
func (s *OrderStore) ConfirmOrder(ctx context.Context, id string, now time.Time) (orders.Order, error) {
	return s.transition(ctx, id, now, func(o orders.Order) (orders.Transition, error) { return orders.ConfirmTransition(o, now) })
}

// CancelOrder implements orders.Store.
func (s *OrderStore) CancelOrder(ctx context.Context, id string, now time.Time) (orders.Order, error) {
	return s.transition(ctx, id, now, func(o orders.Order) (orders.Transition, error) { return orders.CancelTransition(o), nil })
}

// ExpireHolds implements orders.Store. SKIP LOCKED lets several replicas
// sweep at once without waiting on each other or on a confirm in flight.
func (s *OrderStore) ExpireHolds(ctx context.Context, now time.Time, limit int) (int, error) {
	n := 0
	var lockedAt time.Time
	defer func() { s.observeHold(lockedAt) }()
	err := s.db.InTx(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT `+orderColumns+` FROM orders o
			WHERE o.status = 1 AND o.expire_time <= $1
			ORDER BY o.expire_time LIMIT $2 FOR UPDATE SKIP LOCKED`, now, limit)
		if err != nil {
			return err
		}
		list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (orders.Order, error) { return scanOrder(r) })
		if err != nil || len(list) == 0 {
			n = 0
			return err
		}
		if _, err := moveOrder(ctx, tx, s.db.Metrics(), &lockedAt, list, orders.StatusExpired, inventory.MovementExpire, now); err != nil {
			return err
		}
		n = len(list)
		return nil
	})
	if err != nil {
		return 0, mapErr("expire holds", err)
	}
	return n, nil
}

func mapErr(op string, err error) error {
	var ise *inventory.InsufficientStockError
	var lee *orders.LimitExceededError
	switch {
	case errors.As(err, &ise), errors.As(err, &lee),
		errors.Is(err, inventory.ErrItemNotFound), errors.Is(err, orders.ErrOrderNotFound):
		return err
	case errors.Is(err, pg.ErrTimeout):
		return fmt.Errorf("%s: %w: %w", op, orders.ErrUnavailable, err)
	case errors.As(err, new(*pg.AmbiguousCommitError)):
		// Confirm, cancel and expire are safe to repeat: a retry of a
		// transition that did land finds the order already moved.
		return fmt.Errorf("%s: %w: commit outcome unknown, safe to retry: %w", op, orders.ErrUnavailable, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// nullable turns an empty filter into SQL NULL.
func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}
