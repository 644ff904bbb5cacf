// Package memory is the in-process adapter of the inventory Store and
// Auditor. Each item has its own mutex; multi-item changes lock items in
// ascending id order, so they cannot deadlock. It keeps the same guarantees
// as the PostgreSQL adapter, for one process and until it exits.
package memory

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stockguard/stockguard/modules/inventory"
)

type row struct {
	mu   sync.Mutex
	item inventory.Item
	// ledger sums, kept under mu with the item they describe
	sums inventory.LedgerSums
}

// ItemStore is the in-memory inventory store.
type ItemStore struct {
	onChange atomic.Pointer[func(context.Context, []inventory.Item)]

	mu   sync.RWMutex // guards rows, skus and ids (not the rows' contents)
	rows map[string]*row
	skus map[string]string
	ids  []string // sorted ascending
}

// OnChange registers fn to hear every committed stock change, with the
// context of the call that made it and the items' new states, in version
// order per item. fn runs while the items are still locked, so it must not
// block and must not call the store.
func (s *ItemStore) OnChange(fn func(context.Context, []inventory.Item)) { s.onChange.Store(&fn) }

// NewItemStore returns an empty store.
func NewItemStore() *ItemStore {
	return &ItemStore{rows: map[string]*row{}, skus: map[string]string{}}
}

// CreateItem implements inventory.Store.
func (s *ItemStore) CreateItem(ctx context.Context, it inventory.Item) (inventory.Item, error) {
	if err := ctx.Err(); err != nil {
		return inventory.Item{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, taken := s.skus[it.SKU]; taken {
		return inventory.Item{}, inventory.ErrSKUExists
	}
	r := &row{item: it, sums: inventory.LedgerSums{Available: int64(it.Available), Created: int64(it.InitialStock)}}
	s.rows[it.ID] = r
	s.skus[it.SKU] = it.ID
	i, _ := slices.BinarySearch(s.ids, it.ID)
	s.ids = slices.Insert(s.ids, i, it.ID)
	return it, nil
}

// GetItem implements inventory.Store.
func (s *ItemStore) GetItem(ctx context.Context, id string) (inventory.Item, error) {
	if err := ctx.Err(); err != nil {
		return inventory.Item{}, err
	}
	s.mu.RLock()
	r, ok := s.rows[id]
	s.mu.RUnlock()
	if !ok {
		return inventory.Item{}, inventory.ErrItemNotFound
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.item, nil
}

// GetItems implements inventory.Store.
func (s *ItemStore) GetItems(ctx context.Context, ids []string) ([]inventory.Item, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := make([]inventory.Item, 0, len(ids))
	for _, id := range ids {
		s.mu.RLock()
		r, ok := s.rows[id]
		s.mu.RUnlock()
		if !ok {
			continue
		}
		r.mu.Lock()
		out = append(out, r.item)
		r.mu.Unlock()
	}
	return out, nil
}

// ListItems implements inventory.Store.
func (s *ItemStore) ListItems(ctx context.Context, afterID string, limit int) ([]inventory.Item, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	start, found := slices.BinarySearch(s.ids, afterID)
	if found {
		start++
	}
	end := min(start+limit, len(s.ids))
	rows := make([]*row, 0, end-start)
	for _, id := range s.ids[start:end] {
		rows = append(rows, s.rows[id])
	}
	s.mu.RUnlock()
	out := make([]inventory.Item, len(rows))
	for i, r := range rows {
		r.mu.Lock()
		out[i] = r.item
		r.mu.Unlock()
	}
	return out, nil
}

// AdjustStock implements inventory.Store.
func (s *ItemStore) AdjustStock(ctx context.Context, id string, delta int32) (inventory.Item, error) {
	var out inventory.Item
	err := s.UpdateItems(ctx, []string{id}, func(items []inventory.Item) ([]inventory.Movement, error) {
		it := items[0]
		next := int64(it.Available) + int64(delta)
		if next < 0 || next > inventory.MaxStock || int64(it.InitialStock)+int64(it.Adjusted)+int64(delta) > inventory.MaxStock {
			return nil, &inventory.InsufficientStockError{ItemID: id, Requested: -delta, Available: it.Available}
		}
		return []inventory.Movement{{ItemID: id, Kind: inventory.MovementAdjust, Available: delta, CreateTime: time.Now().UTC()}}, nil
	})
	if err != nil {
		return inventory.Item{}, err
	}
	out, err = s.GetItem(context.WithoutCancel(ctx), id)
	return out, err
}

// UpdateItems locks the items ids (sorted ascending, no duplicates) in that
// order and calls fn with copies of them. When fn returns nil, its movements
// are applied to the items and added to their ledger sums before the locks are
// released; otherwise nothing changes. Each item moved gets one new version.
func (s *ItemStore) UpdateItems(ctx context.Context, ids []string, fn func(items []inventory.Item) ([]inventory.Movement, error)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if !slices.IsSorted(ids) {
		return fmt.Errorf("memory: UpdateItems needs sorted ids")
	}
	if len(slices.Compact(slices.Clone(ids))) != len(ids) {
		return fmt.Errorf("memory: UpdateItems needs unique ids, got %v", ids)
	}
	rows := make([]*row, len(ids))
	s.mu.RLock()
	for i, id := range ids {
		r, ok := s.rows[id]
		if !ok {
			s.mu.RUnlock()
			return fmt.Errorf("%w: %s", inventory.ErrItemNotFound, id)
		}
		rows[i] = r
	}
	s.mu.RUnlock()
	for _, r := range rows {
		r.mu.Lock()
		defer r.mu.Unlock()
	}
	copies := make([]inventory.Item, len(rows))
	byID := make(map[string]*row, len(rows))
	for i, r := range rows {
		copies[i] = r.item
		byID[r.item.ID] = r
	}
	moves, err := fn(copies)
	if err != nil {
		return err
	}
	// Work out every new state first, so that a refused movement leaves
	// every item as it was.
	next := make(map[string]inventory.Item, len(rows))
	for _, m := range moves {
		r, ok := byID[m.ItemID]
		if !ok {
			return fmt.Errorf("memory: movement for item %s that was not locked", m.ItemID)
		}
		it, seen := next[m.ItemID]
		if !seen {
			it = r.item
		}
		m.Apply(&it)
		next[m.ItemID] = it
	}
	for id, it := range next {
		if it.Available < 0 || it.Reserved < 0 || it.Sold < 0 || !it.Conserved() {
			// The same refusal the database's CHECK constraints give.
			return fmt.Errorf("memory: movements would break item %s: %+v", id, it)
		}
	}
	changed := make([]inventory.Item, 0, len(next))
	for id, it := range next {
		r := byID[id]
		it.Version = r.item.Version + 1 // one version per item per change, as in PostgreSQL
		r.item = it
		changed = append(changed, it)
	}
	if fn := s.onChange.Load(); fn != nil && len(changed) > 0 {
		(*fn)(ctx, changed)
	}
	for _, m := range moves {
		sums := &byID[m.ItemID].sums
		sums.Available += int64(m.Available)
		sums.Reserved += int64(m.Reserved)
		sums.Sold += int64(m.Sold)
		if m.Kind == inventory.MovementAdjust {
			sums.Adjusted += int64(m.Available)
		}
	}
	return nil
}

// Audit implements inventory.Auditor.
func (s *ItemStore) Audit(ctx context.Context) (inventory.AuditReport, error) {
	var report inventory.AuditReport
	if err := ctx.Err(); err != nil {
		return report, err
	}
	s.mu.RLock()
	rows := make([]*row, 0, len(s.ids))
	for _, id := range s.ids {
		rows = append(rows, s.rows[id])
	}
	s.mu.RUnlock()
	for _, r := range rows {
		r.mu.Lock()
		it, sums := r.item, r.sums
		r.mu.Unlock()
		report.ItemsChecked++
		report.Discrepancies = append(report.Discrepancies, inventory.CheckAgainstLedger(it, sums)...)
	}
	return report, nil
}
