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

// PlaceBatch implements orders.Store: many orders of one item in one
// transaction: one FOR UPDATE, one UPDATE of the item, one multi-row insert
// each of orders, lines and ledger rows.
func (s *OrderStore) PlaceBatch(ctx context.Context, batch []orders.Order, wanted func(i int) bool) ([]orders.BatchResult, error) {
	if len(batch) == 0 {
		return nil, nil
	}
	itemID := ""
	for _, o := range batch {
		d := orders.Demand(o.Lines)
		if len(d) != 1 || (itemID != "" && d[0].ItemID != itemID) {
			return nil, fmt.Errorf("place batch: every order must buy the same single item")
		}
		itemID = d[0].ItemID
	}
	var results []orders.BatchResult
	var lockedAt time.Time
	err := s.db.InTx(ctx, func(tx pgx.Tx) error {
		var err error
		results, err = placeBatchInTx(ctx, tx, s.db.Metrics(), &lockedAt, itemID, batch, wanted)
		return err
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
		// A duplicate placed outside this batch won the race for a key:
		// fall back to placing each order on its own, which resolves it.
		out := make([]orders.BatchResult, len(batch))
		for i, o := range batch {
			placed, replayed, perr := s.PlaceOrder(ctx, o)
			out[i] = orders.BatchResult{Order: placed, Replayed: replayed, Err: perr}
		}
		return out, nil
	}
	return nil, mapErr("place batch", err)
}

func placeBatchInTx(ctx context.Context, tx pgx.Tx, m *pg.Metrics, lockedAt *time.Time, itemID string, batch []orders.Order, wanted func(i int) bool) ([]orders.BatchResult, error) {
	results := make([]orders.BatchResult, len(batch))

	// Keys already used: one lookup for the whole batch.
	var customers, keys []string
	for _, o := range batch {
		if o.IdempotencyKey != "" {
			customers, keys = append(customers, o.CustomerID), append(keys, o.IdempotencyKey)
		}
	}
	prior := map[string]orders.Order{}
	if len(keys) > 0 {
		rows, err := tx.Query(ctx, `SELECT `+orderColumns+` FROM orders o
			JOIN unnest($1::text[], $2::text[]) AS k(c, key) ON o.customer_id = k.c AND o.idempotency_key = k.key`, customers, keys)
		if err != nil {
			return nil, err
		}
		found, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (orders.Order, error) { return scanOrder(r) })
		if err != nil {
			return nil, err
		}
		for _, o := range found {
			prior[o.CustomerID+"\x00"+o.IdempotencyKey] = o
		}
	}

	items, err := lockItems(ctx, tx, m, lockedAt, []string{itemID})
	if err != nil {
		return nil, err
	}
	item := items[itemID]
	held := map[string]int32{}
	if item.maxPerCustomer > 0 {
		var cs []string
		for _, o := range batch {
			cs = append(cs, o.CustomerID)
		}
		rows, err := tx.Query(ctx, `SELECT customer_id, quantity FROM customer_holdings WHERE item_id = $1 AND customer_id = ANY($2::text[])`, itemID, cs)
		if err != nil {
			return nil, err
		}
		var c string
		var q int32
		if _, err := pgx.ForEachRow(rows, []any{&c, &q}, func() error { held[c] = q; return nil }); err != nil {
			return nil, err
		}
	}

	// Allocate in arrival order.
	available := item.available
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
		q := orders.Demand(o.Lines)[0].Quantity
		if available < q {
			results[i] = orders.BatchResult{Err: &inventory.InsufficientStockError{ItemID: itemID, Requested: q, Available: available}}
			continue
		}
		if limit := item.maxPerCustomer; limit > 0 && int64(held[o.CustomerID])+int64(q) > int64(limit) {
			results[i] = orders.BatchResult{Err: &orders.LimitExceededError{ItemID: itemID, Limit: limit, Held: held[o.CustomerID], Requested: q}}
			continue
		}
		available -= q
		if item.maxPerCustomer > 0 {
			held[o.CustomerID] += q
		}
		results[i] = orders.BatchResult{Order: o}
		accepted = append(accepted, o)
	}
	if len(accepted) == 0 {
		return results, nil
	}
	if err := insertOrders(ctx, tx, accepted); err != nil {
		return nil, err
	}
	moves := make([]inventory.Movement, len(accepted))
	for i, o := range accepted {
		q := orders.Demand(o.Lines)[0].Quantity
		moves[i] = inventory.Movement{ItemID: itemID, OrderID: o.ID, Kind: inventory.MovementPurchase, Available: -q, Sold: q}
		if o.Status == orders.StatusPending {
			moves[i] = inventory.Movement{ItemID: itemID, OrderID: o.ID, Kind: inventory.MovementHold, Available: -q, Reserved: q}
		}
	}
	if err := applyMovements(ctx, tx, moves, accepted[len(accepted)-1].CreateTime); err != nil {
		return nil, err
	}
	if item.maxPerCustomer > 0 {
		sums := map[string]int32{}
		for _, o := range accepted {
			sums[o.CustomerID] += orders.Demand(o.Lines)[0].Quantity
		}
		for c, q := range sums {
			if err := addHoldings(ctx, tx, c, []string{itemID}, []int32{q}); err != nil {
				return nil, err
			}
		}
	}
	return results, nil
}

func replayOf(prior, req orders.Order) orders.BatchResult {
	if prior.RequestHash != req.RequestHash {
		return orders.BatchResult{Err: orders.ErrIdempotencyKeyReused}
	}
	return orders.BatchResult{Order: prior, Replayed: true}
}

// insertOrders writes many orders and their lines with one statement each.
func insertOrders(ctx context.Context, tx pgx.Tx, list []orders.Order) error {
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
	if _, err := tx.Exec(ctx, `INSERT INTO orders (id, customer_id, status, idempotency_key, request_hash, create_time, update_time, expire_time)
		SELECT id, c, st, k, h, t, t, e FROM unnest($1::uuid[], $2::text[], $3::smallint[], $4::text[], $5::text[], $6::timestamptz[], $7::timestamptz[])
		AS o(id, c, st, k, h, t, e)`, ids, customers, statuses, keys, hashes, created, expires); err != nil {
		return err
	}
	_, err := tx.Exec(ctx, `INSERT INTO order_lines (order_id, line_no, item_id, quantity)
		SELECT o, n, i, q FROM unnest($1::uuid[], $2::smallint[], $3::uuid[], $4::int[]) AS l(o, n, i, q)`, lOrder, lNo, lItem, lQty)
	return err
}
