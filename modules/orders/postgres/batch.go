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

// PlaceBatch implements orders.Store: many single-item orders, of one item
// or of many, in one transaction: one FOR UPDATE SKIP LOCKED of their items
// in id order, one UPDATE of them, one multi-row insert each of orders,
// lines and ledger rows. The orders of an item that another transaction
// holds locked get orders.ErrItemBusy.
func (s *OrderStore) PlaceBatch(ctx context.Context, batch []orders.Order, wanted func(i int) bool) ([]orders.BatchResult, error) {
	if len(batch) == 0 {
		return nil, nil
	}
	for _, o := range batch {
		if len(orders.Demand(o.Lines)) != 1 {
			return nil, fmt.Errorf("place batch: every order must name a single item")
		}
	}
	// A duplicate key placed outside the batch (the same customer and key
	// used for another item at the same moment) can win the unique index
	// after the batch looked its keys up. The batch then rolled back whole;
	// a second try looks the keys up again and sees the winner. Only if a
	// duplicate wins again do the orders go one by one, which resolves any
	// number of races but costs a transaction each.
	for try := 0; ; try++ {
		results, err := s.placeBatchOnce(ctx, batch, wanted)
		if !pg.IsUniqueViolation(err, "orders_idempotency_key") {
			return results, err
		}
		if try == 1 {
			return orders.PlaceEach(ctx, batch, wanted, s.PlaceOrder), nil
		}
	}
}

// placeBatchOnce is one transaction of PlaceBatch. A unique violation on
// the idempotency key comes back unmapped, for PlaceBatch to resolve.
func (s *OrderStore) placeBatchOnce(ctx context.Context, batch []orders.Order, wanted func(i int) bool) ([]orders.BatchResult, error) {
	var results []orders.BatchResult
	var lockedAt time.Time
	// Two round trips: BEGIN, the row locks and the idempotency lookup go
	// out together; the writes go out with COMMIT.
	p := newBatchPlan(batch)
	err := s.db.InTxPipelined(ctx, p.queueLockAndLookup, func(br pgx.BatchResults, q pg.Querier) (*pgx.Batch, error) {
		var w writes
		var err error
		results, err = p.allocate(ctx, br, q, s.db.Metrics(), &lockedAt, wanted, &w)
		return &w.b, err
	})
	s.observeHold(lockedAt)
	var amb *pg.AmbiguousCommitError
	switch {
	case err == nil:
		return results, nil
	case errors.As(err, &amb):
		// One transaction: if any placed order is there, all of them are.
		for _, r := range results {
			if r.Err != nil || r.Replayed {
				continue
			}
			if _, gerr := s.GetOrder(context.WithoutCancel(ctx), r.Order.ID); gerr == nil {
				s.db.Metrics().AmbiguousCommit("committed")
				return results, nil
			}
			break
		}
		s.db.Metrics().AmbiguousCommit("unknown")
		return nil, fmt.Errorf("place batch: %w: commit outcome unknown, retry with the same idempotency key: %w", orders.ErrUnavailable, err)
	case pg.IsUniqueViolation(err, "orders_idempotency_key"):
		return nil, err
	}
	return nil, mapErr("place batch", err)
}

type holdingKey struct{ customer, item string }

// batchPlan is one batch on its way through a pipelined transaction.
type batchPlan struct {
	batch           []orders.Order
	customers, keys []string // the (customer, key) pairs to look up
	ids             []string // the batch's items, sorted
	lockSent        time.Time
}

func newBatchPlan(batch []orders.Order) *batchPlan {
	p := &batchPlan{batch: batch}
	itemSet := map[string]bool{}
	for _, o := range batch {
		if o.IdempotencyKey != "" {
			p.customers, p.keys = append(p.customers, o.CustomerID), append(p.keys, o.IdempotencyKey)
		}
		itemSet[o.Lines[0].ItemID] = true
	}
	for id := range itemSet {
		p.ids = append(p.ids, id)
	}
	p.ids = orders.SortedIDs(p.ids)
	return p
}

// queueLockAndLookup queues the row locks of every item of the batch, in id
// order, and then the lookup of the keys already used (one for the whole
// batch). The lookup runs after the locks are held, so it sees every batch
// of the same items that committed before this one.
func (p *batchPlan) queueLockAndLookup(b *pgx.Batch) {
	b.Queue(lockFreeSQL, p.ids)
	if len(p.keys) > 0 {
		b.Queue(`SELECT `+orderColumns+` FROM orders o
			JOIN unnest($1::text[], $2::text[]) AS k(c, key) ON o.customer_id = k.c AND o.idempotency_key = k.key`, p.customers, p.keys)
	}
	p.lockSent = time.Now()
}

// allocate reads the locked rows and prior orders from br, allocates the
// stock in arrival order, and adds the writes of the accepted orders to w.
func (p *batchPlan) allocate(ctx context.Context, br pgx.BatchResults, q pg.Querier, m *pg.Metrics, lockedAt *time.Time,
	wanted func(i int) bool, w *writes,
) ([]orders.BatchResult, error) {
	batch := p.batch
	results := make([]orders.BatchResult, len(batch))
	prior, items, err := p.readLockAndLookup(br, m, lockedAt)
	if err != nil {
		return nil, err
	}
	busy, err := p.busyItems(ctx, q, items)
	if err != nil {
		return nil, err
	}
	held := map[holdingKey]int32{}
	var limitedItems, limitedCustomers []string
	for _, o := range batch {
		if it, ok := items[o.Lines[0].ItemID]; ok && it.maxPerCustomer > 0 {
			limitedItems, limitedCustomers = append(limitedItems, it.id), append(limitedCustomers, o.CustomerID)
		}
	}
	if len(limitedItems) > 0 {
		rows, err := q.Query(ctx, `SELECT customer_id, item_id::text, quantity FROM customer_holdings
			WHERE item_id = ANY($1::uuid[]) AND customer_id = ANY($2::text[])`, limitedItems, limitedCustomers)
		if err != nil {
			return nil, err
		}
		var c, id string
		var q int32
		if _, err := pgx.ForEachRow(rows, []any{&c, &id, &q}, func() error { held[holdingKey{c, id}] = q; return nil }); err != nil {
			return nil, err
		}
	}

	// Allocate in arrival order.
	available := make(map[string]int32, len(items))
	for id, it := range items {
		available[id] = it.available
	}
	inBatch := map[string]int{} // customer+key -> index of the first order with it
	var accepted []orders.Order
	for i, o := range batch {
		if wanted != nil && !wanted(i) {
			results[i] = orders.BatchResult{Err: context.Canceled}
			continue
		}
		if o.IdempotencyKey != "" {
			k := o.CustomerID + "\x00" + o.IdempotencyKey
			if p, ok := prior[k]; ok {
				results[i] = replayOf(p, o)
				continue
			}
			if j, ok := inBatch[k]; ok {
				first := results[j]
				switch {
				case batch[j].RequestHash != o.RequestHash:
					results[i] = orders.BatchResult{Err: orders.ErrIdempotencyKeyReused}
				case first.Err != nil:
					results[i] = first
				default:
					results[i] = orders.BatchResult{Order: first.Order, Replayed: true}
				}
				continue
			}
			inBatch[k] = i
		}
		d := orders.Demand(o.Lines)[0]
		it, ok := items[d.ItemID]
		switch {
		case !ok && busy[d.ItemID]:
			results[i] = orders.BatchResult{Err: orders.ErrItemBusy}
			continue
		case !ok:
			results[i] = orders.BatchResult{Err: fmt.Errorf("%w: %s", inventory.ErrItemNotFound, d.ItemID)}
			continue
		}
		if available[d.ItemID] < d.Quantity {
			results[i] = orders.BatchResult{Err: &inventory.InsufficientStockError{ItemID: d.ItemID, Requested: d.Quantity, Available: available[d.ItemID]}}
			continue
		}
		hk := holdingKey{o.CustomerID, d.ItemID}
		if limit := it.maxPerCustomer; limit > 0 && int64(held[hk])+int64(d.Quantity) > int64(limit) {
			results[i] = orders.BatchResult{Err: &orders.LimitExceededError{ItemID: d.ItemID, Limit: limit, Held: held[hk], Requested: d.Quantity}}
			continue
		}
		available[d.ItemID] -= d.Quantity
		if it.maxPerCustomer > 0 {
			held[hk] += d.Quantity
		}
		results[i] = orders.BatchResult{Order: o}
		accepted = append(accepted, o)
	}
	if len(accepted) == 0 {
		return results, nil
	}
	insertOrders(w, accepted)
	moves := make([]inventory.Movement, len(accepted))
	added := map[holdingKey]int32{}
	for i, o := range accepted {
		d := orders.Demand(o.Lines)[0]
		moves[i] = inventory.Movement{ItemID: d.ItemID, OrderID: o.ID, Kind: inventory.MovementPurchase, Available: -d.Quantity, Sold: d.Quantity}
		if o.Status == orders.StatusPending {
			moves[i] = inventory.Movement{ItemID: d.ItemID, OrderID: o.ID, Kind: inventory.MovementHold, Available: -d.Quantity, Reserved: d.Quantity}
		}
		if items[d.ItemID].maxPerCustomer > 0 {
			added[holdingKey{o.CustomerID, d.ItemID}] += d.Quantity
		}
	}
	applyMovements(ctx, w, moves, accepted[len(accepted)-1].CreateTime)
	for k, q := range added {
		addHoldings(w, k.customer, []string{k.item}, []int32{q})
	}
	return results, nil
}

// busyItems tells, among the batch's items that the lock left out, those
// that exist (another transaction holds them) from those that do not. It
// costs a round trip only when some item was left out.
func (p *batchPlan) busyItems(ctx context.Context, q pg.Querier, locked map[string]lockedItem) (map[string]bool, error) {
	if len(locked) == len(p.ids) {
		return nil, nil
	}
	var missing []string
	for _, id := range p.ids {
		if _, ok := locked[id]; !ok {
			missing = append(missing, id)
		}
	}
	rows, err := q.Query(ctx, `SELECT id::text FROM items WHERE id = ANY($1::uuid[])`, missing)
	if err != nil {
		return nil, err
	}
	busy := map[string]bool{}
	var id string
	_, err = pgx.ForEachRow(rows, []any{&id}, func() error { busy[id] = true; return nil })
	return busy, err
}

// readLockAndLookup reads the results of queueLockAndLookup.
func (p *batchPlan) readLockAndLookup(br pgx.BatchResults, m *pg.Metrics, lockedAt *time.Time) (map[string]orders.Order, map[string]lockedItem, error) {
	rows, err := br.Query()
	if err != nil {
		return nil, nil, err
	}
	items, err := scanLocked(rows, m, p.lockSent, lockedAt)
	if err != nil {
		return nil, nil, err
	}
	prior := map[string]orders.Order{}
	if len(p.keys) > 0 {
		rows, err := br.Query()
		if err != nil {
			return nil, nil, err
		}
		found, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (orders.Order, error) { return scanOrder(r) })
		if err != nil {
			return nil, nil, err
		}
		for _, o := range found {
			prior[o.CustomerID+"\x00"+o.IdempotencyKey] = o
		}
	}
	return prior, items, nil
}

func replayOf(prior, req orders.Order) orders.BatchResult {
	if prior.RequestHash != req.RequestHash {
		return orders.BatchResult{Err: orders.ErrIdempotencyKeyReused}
	}
	return orders.BatchResult{Order: prior, Replayed: true}
}

// insertOrders adds to w the inserts of many orders and their lines, one
// statement each.
func insertOrders(w *writes, list []orders.Order) {
	n := len(list)
	ids, customers, hashes := make([]string, n), make([]string, n), make([]string, n)
	keys, expires := make([]*string, n), make([]*time.Time, n)
	statuses, created := make([]int16, n), make([]time.Time, n)
	var lOrder, lItem []string
	var lNo []int16
	var lQty []int32
	for i, o := range list {
		ids[i], customers[i], hashes[i], statuses[i], created[i] = o.ID, o.CustomerID, o.RequestHash, int16(o.Status), o.CreateTime
		if o.IdempotencyKey != "" {
			k := o.IdempotencyKey
			keys[i] = &k
		}
		if !o.ExpireTime.IsZero() {
			e := o.ExpireTime
			expires[i] = &e
		}
		for j, l := range o.Lines {
			lOrder, lItem, lNo, lQty = append(lOrder, o.ID), append(lItem, l.ItemID), append(lNo, int16(j)), append(lQty, l.Quantity)
		}
	}
	w.add(`INSERT INTO orders (id, customer_id, status, idempotency_key, request_hash, create_time, update_time, expire_time)
		SELECT id, c, st, k, h, t, t, e FROM unnest($1::uuid[], $2::text[], $3::smallint[], $4::text[], $5::text[], $6::timestamptz[], $7::timestamptz[])
		AS o(id, c, st, k, h, t, e)`, ids, customers, statuses, keys, hashes, created, expires)
	w.add(`INSERT INTO order_lines (order_id, line_no, item_id, quantity)
		SELECT o, n, i, q FROM unnest($1::uuid[], $2::smallint[], $3::uuid[], $4::int[]) AS l(o, n, i, q)`, lOrder, lNo, lItem, lQty)
}
