// Package postgres is the PostgreSQL adapter of the inventory Store and
// Auditor. Stock changes take the item's row lock (SELECT ... FOR UPDATE)
// and append to stock_ledger in the same transaction.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/jackc/pgx/v5"

	"github.com/stockguard/stockguard/modules/inventory"
	pg "github.com/stockguard/stockguard/platform/postgres"
)

// ItemStore is the PostgreSQL inventory store; it implements inventory.Store and inventory.Auditor.
type ItemStore struct {
	db      *pg.Runner
	created atomic.Int64 // items this store has created, for refreshStatistics
}

// NewItemStore returns a store that runs its transactions through db.
func NewItemStore(db *pg.Runner) *ItemStore {
	return &ItemStore{db: db}
}

const itemColumns = `id::text, sku, name, initial_stock, adjusted, available, reserved, sold, max_per_customer, version, create_time`

func scanItem(row pgx.Row) (inventory.Item, error) {
	var it inventory.Item
	err := row.Scan(&it.ID, &it.SKU, &it.Name, &it.InitialStock, &it.Adjusted, &it.Available,
		&it.Reserved, &it.Sold, &it.MaxPerCustomer, &it.Version, &it.CreateTime)
	return it, err
}

// CreateItem inserts the item and its 'create' ledger row.
func (s *ItemStore) CreateItem(ctx context.Context, it inventory.Item) (inventory.Item, error) {
	created, err := s.createItem(ctx, it)
	if err == nil {
		s.refreshStatistics(ctx)
	}
	return created, err
}

// refreshStatistics analyzes the items table when this store's creations
// reach 64, 128, 256 and so on. PostgreSQL keeps the plans of foreign-key
// checks (every ledger row and order line checks its item) for the life of
// a connection, and plans them from the statistics of the moment: plans
// made while items held one row scan the table instead of using its key, and
// stay that way after thousands of items are created, until ANALYZE
// invalidates them. Autovacuum gets there within a minute or so; a sale that
// starts right after its items are created would spend that minute scanning
// (measured: 10,000 items created after a minute of sales of one item, each
// ledger insert then read 128 buffers per row instead of 7, and throughput
// fell by half). Doubling steps keep the cost to a few ANALYZEs of a small
// table however many items are created.
func (s *ItemStore) refreshStatistics(ctx context.Context) {
	n := s.created.Add(1)
	if n < 64 || n&(n-1) != 0 {
		return
	}
	// Best effort: stale statistics cost speed, never correctness.
	_, _ = s.db.Pool().Exec(context.WithoutCancel(ctx), "ANALYZE items")
}

func (s *ItemStore) createItem(ctx context.Context, it inventory.Item) (inventory.Item, error) {
	err := s.db.InTx(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO items (id, sku, name, initial_stock, adjusted, available, reserved, sold, max_per_customer, version, create_time)
			VALUES ($1, $2, $3, $4, 0, $4, 0, 0, $5, $6, $7)`,
			it.ID, it.SKU, it.Name, it.InitialStock, it.MaxPerCustomer, it.Version, it.CreateTime)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO stock_ledger (item_id, kind, d_available, d_reserved, d_sold, create_time)
			VALUES ($1, 'create', $2, 0, 0, $3)`, it.ID, it.InitialStock, it.CreateTime)
		return err
	})
	if err != nil {
		if pg.IsUniqueViolation(err, "items_sku_key") {
			return inventory.Item{}, inventory.ErrSKUExists
		}
		var amb *pg.AmbiguousCommitError
		if errors.As(err, &amb) {
			// The id is ours: if the row is there, the commit went through.
			if got, gerr := s.GetItem(context.WithoutCancel(ctx), it.ID); gerr == nil {
				return got, nil
			}
		}
		return inventory.Item{}, mapErr("create item", err)
	}
	return it, nil
}

// GetItem reads one item without locking it.
func (s *ItemStore) GetItem(ctx context.Context, id string) (inventory.Item, error) {
	it, err := scanItem(s.db.Pool().QueryRow(ctx, `SELECT `+itemColumns+` FROM items WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return inventory.Item{}, inventory.ErrItemNotFound
	}
	if err != nil {
		return inventory.Item{}, mapErr("get item", err)
	}
	return it, nil
}

// GetItems reads items by id without locking them; unknown or malformed
// ids are left out.
func (s *ItemStore) GetItems(ctx context.Context, ids []string) ([]inventory.Item, error) {
	valid := make([]string, 0, len(ids))
	for _, id := range ids {
		if inventory.ValidateID("item_id", id) == nil {
			valid = append(valid, id)
		}
	}
	rows, err := s.db.Pool().Query(ctx, `SELECT `+itemColumns+` FROM items WHERE id = ANY($1::uuid[])`, valid)
	if err != nil {
		return nil, mapErr("get items", err)
	}
	items, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (inventory.Item, error) { return scanItem(r) })
	if err != nil {
		return nil, mapErr("get items", err)
	}
	return items, nil
}

// ListItems pages by primary key, so each page is one index range scan.
func (s *ItemStore) ListItems(ctx context.Context, afterID string, limit int) ([]inventory.Item, error) {
	var rows pgx.Rows
	var err error
	if afterID == "" {
		rows, err = s.db.Pool().Query(ctx, `SELECT `+itemColumns+` FROM items ORDER BY id LIMIT $1`, limit)
	} else {
		rows, err = s.db.Pool().Query(ctx, `SELECT `+itemColumns+` FROM items WHERE id > $1 ORDER BY id LIMIT $2`, afterID, limit)
	}
	if err != nil {
		return nil, mapErr("list items", err)
	}
	items, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (inventory.Item, error) { return scanItem(r) })
	if err != nil {
		return nil, mapErr("list items", err)
	}
	return items, nil
}

// AdjustStock locks the item row, checks the new level, and writes it with
// its ledger row.
func (s *ItemStore) AdjustStock(ctx context.Context, id string, delta int32) (inventory.Item, error) {
	var out inventory.Item
	err := s.db.InTx(ctx, func(tx pgx.Tx) error {
		it, err := scanItem(tx.QueryRow(ctx, `SELECT `+itemColumns+` FROM items WHERE id = $1 FOR UPDATE`, id))
		if errors.Is(err, pgx.ErrNoRows) {
			return inventory.ErrItemNotFound
		}
		if err != nil {
			return err
		}
		next := int64(it.Available) + int64(delta)
		if next < 0 || next > inventory.MaxStock || int64(it.InitialStock)+int64(it.Adjusted)+int64(delta) > inventory.MaxStock {
			return &inventory.InsufficientStockError{ItemID: id, Requested: -delta, Available: it.Available}
		}
		out, err = scanItem(tx.QueryRow(ctx, `UPDATE items SET available = available + $2, adjusted = adjusted + $2, version = version + 1
			WHERE id = $1 RETURNING `+itemColumns, id, delta))
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `WITH changed AS (SELECT id, available, reserved, sold, version FROM items WHERE id = $1) `+pg.NotifyStockSQL("$2"), id, pg.TraceParent(ctx)); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO stock_ledger (item_id, kind, d_available, d_reserved, d_sold, create_time)
			VALUES ($1, 'adjust', $2, 0, 0, now())`, id, delta)
		return err
	})
	var amb *pg.AmbiguousCommitError
	if errors.As(err, &amb) {
		// An adjustment has no natural key to look up, so a lost commit
		// answer cannot be resolved here; the caller must read the item.
		return inventory.Item{}, fmt.Errorf("%w: adjust stock: outcome unknown, read the item before retrying: %w", inventory.ErrUnavailable, err)
	}
	if err != nil {
		return inventory.Item{}, mapErr("adjust stock", err)
	}
	return out, nil
}

// Audit checks conservation on every item row, then compares every item
// with the sums of its ledger rows.
func (s *ItemStore) Audit(ctx context.Context) (inventory.AuditReport, error) {
	var report inventory.AuditReport
	rows, err := s.db.Pool().Query(ctx, `
		SELECT i.id::text, i.sku, i.initial_stock, i.adjusted, i.available, i.reserved, i.sold,
		       COALESCE(l.a, 0), COALESCE(l.r, 0), COALESCE(l.s, 0), COALESCE(l.adj, 0), COALESCE(l.created, 0)
		FROM items i
		LEFT JOIN (
			SELECT item_id,
			       sum(d_available) AS a, sum(d_reserved) AS r, sum(d_sold) AS s,
			       sum(d_available) FILTER (WHERE kind = 'adjust') AS adj,
			       sum(d_available) FILTER (WHERE kind = 'create') AS created
			FROM stock_ledger GROUP BY item_id
		) l ON l.item_id = i.id
		ORDER BY i.id`)
	if err != nil {
		return report, mapErr("audit", err)
	}
	defer rows.Close()
	for rows.Next() {
		var it inventory.Item
		var la, lr, ls, ladj, lcreated int64
		if err := rows.Scan(&it.ID, &it.SKU, &it.InitialStock, &it.Adjusted, &it.Available, &it.Reserved, &it.Sold,
			&la, &lr, &ls, &ladj, &lcreated); err != nil {
			return report, mapErr("audit", err)
		}
		report.ItemsChecked++
		report.Discrepancies = append(report.Discrepancies,
			inventory.CheckAgainstLedger(it, inventory.LedgerSums{Available: la, Reserved: lr, Sold: ls, Adjusted: ladj, Created: lcreated})...)
	}
	if err := rows.Err(); err != nil {
		return report, mapErr("audit", err)
	}
	return report, nil
}

func mapErr(op string, err error) error {
	switch {
	case errors.Is(err, inventory.ErrItemNotFound):
		return err
	case errors.Is(err, pg.ErrTimeout):
		return fmt.Errorf("%s: %w: %w", op, inventory.ErrUnavailable, err)
	}
	var ise *inventory.InsufficientStockError
	if errors.As(err, &ise) {
		return err
	}
	return fmt.Errorf("%s: %w", op, err)
}
