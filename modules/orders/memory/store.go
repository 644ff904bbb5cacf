// Package memory is the in-process adapter of the orders Store. It moves
// stock through the in-memory item table (see Items), so an order and its
// stock change happen under the same item locks, all or nothing.
package memory

import (
	"context"
	"hash/maphash"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/stockguard/stockguard/modules/inventory"
	"github.com/stockguard/stockguard/modules/orders"
)

//go:generate go tool mockgen -typed -destination=mock_items_test.go -package=memory . Items

// Items is the in-memory item table this store moves stock in. It is
// consumed here and implemented by the in-memory inventory adapter.
type Items interface {
	// UpdateItems locks ids (sorted, unique) in order, calls fn with copies
	// of the items, and applies fn's movements only when fn returns nil.
	UpdateItems(ctx context.Context, ids []string, fn func(items []inventory.Item) ([]inventory.Movement, error)) error
}

// keyStripes serialises placements that share an idempotency key, so that
// concurrent duplicates make one order.
const keyStripes = 256

// OrderStore is the in-memory orders store.
type OrderStore struct {
	items Items
	seed  maphash.Seed
	keys  [keyStripes]sync.Mutex

	mu       sync.RWMutex // guards the maps below and every order's fields
	orders   map[string]*orders.Order
	byKey    map[string]string // customer \x00 key -> order id
	pending  map[string]struct{}
	holdings map[holding]int32 // limited items only; changed under the item's lock
}

type holding struct{ customer, item string }

// NewOrderStore returns an empty store that moves stock in items.
func NewOrderStore(items Items) *OrderStore {
	return &OrderStore{
		items:    items,
		seed:     maphash.MakeSeed(),
		orders:   map[string]*orders.Order{},
		byKey:    map[string]string{},
		pending:  map[string]struct{}{},
		holdings: map[holding]int32{},
	}
}

func keyOf(customer, key string) string { return customer + "\x00" + key }

// PlaceOrder implements orders.Store.
func (s *OrderStore) PlaceOrder(ctx context.Context, o orders.Order) (orders.Order, bool, error) {
	if o.IdempotencyKey != "" {
		k := keyOf(o.CustomerID, o.IdempotencyKey)
		stripe := &s.keys[maphash.String(s.seed, k)%keyStripes]
		stripe.Lock()
		defer stripe.Unlock()
		s.mu.RLock()
		priorID, found := s.byKey[k]
		var prior orders.Order
		if found {
			prior = clone(s.orders[priorID])
		}
		s.mu.RUnlock()
		if found {
			if prior.RequestHash != o.RequestHash {
				return orders.Order{}, false, orders.ErrIdempotencyKeyReused
			}
			return prior, true, nil
		}
	}
	demand := orders.Demand(o.Lines)
	ids := make([]string, len(demand))
	for i, d := range demand {
		ids[i] = d.ItemID
	}
	err := s.items.UpdateItems(ctx, ids, func(items []inventory.Item) ([]inventory.Movement, error) {
		for i, d := range demand {
			if items[i].Available < d.Quantity {
				return nil, &inventory.InsufficientStockError{ItemID: d.ItemID, Requested: d.Quantity, Available: items[i].Available}
			}
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		for i, d := range demand {
			if limit := items[i].MaxPerCustomer; limit > 0 {
				held := s.holdings[holding{o.CustomerID, d.ItemID}]
				if int64(held)+int64(d.Quantity) > int64(limit) {
					return nil, &orders.LimitExceededError{ItemID: d.ItemID, Limit: limit, Held: held, Requested: d.Quantity}
				}
			}
		}
		moves := make([]inventory.Movement, len(demand))
		for i, d := range demand {
			if items[i].MaxPerCustomer > 0 {
				s.holdings[holding{o.CustomerID, d.ItemID}] += d.Quantity
			}
			moves[i] = inventory.Movement{ItemID: d.ItemID, OrderID: o.ID, Kind: inventory.MovementPurchase,
				Available: -d.Quantity, Sold: d.Quantity, CreateTime: o.CreateTime}
			if o.Status == orders.StatusPending {
				moves[i].Kind, moves[i].Sold, moves[i].Reserved = inventory.MovementHold, 0, d.Quantity
			}
		}
		stored := clone(&o)
		s.orders[o.ID] = &stored
		if o.IdempotencyKey != "" {
			s.byKey[keyOf(o.CustomerID, o.IdempotencyKey)] = o.ID
		}
		if o.Status == orders.StatusPending {
			s.pending[o.ID] = struct{}{}
		}
		return moves, nil
	})
	if err != nil {
		return orders.Order{}, false, err
	}
	return o, false, nil
}

func clone(o *orders.Order) orders.Order {
	c := *o
	c.Lines = slices.Clone(o.Lines)
	return c
}

// GetOrder implements orders.Store.
func (s *OrderStore) GetOrder(ctx context.Context, id string) (orders.Order, error) {
	if err := ctx.Err(); err != nil {
		return orders.Order{}, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	o, ok := s.orders[id]
	if !ok {
		return orders.Order{}, orders.ErrOrderNotFound
	}
	return clone(o), nil
}

// ListOrders implements orders.Store. It scans every order: the in-memory
// store is for development and tests, not for millions of orders.
func (s *OrderStore) ListOrders(ctx context.Context, f orders.ListFilter) ([]orders.Order, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	var out []orders.Order
	for _, o := range s.orders {
		if f.CustomerID != "" && o.CustomerID != f.CustomerID {
			continue
		}
		if f.BeforeID != "" && o.ID >= f.BeforeID {
			continue
		}
		if f.ItemID != "" && !slices.ContainsFunc(o.Lines, func(l orders.Line) bool { return l.ItemID == f.ItemID }) {
			continue
		}
		out = append(out, clone(o))
	}
	s.mu.RUnlock()
	slices.SortFunc(out, func(a, b orders.Order) int { return strings.Compare(b.ID, a.ID) })
	if len(out) > f.Limit {
		out = out[:f.Limit]
	}
	return out, nil
}

// transition locks the order's items, then decides and applies the order's
// next status under those locks. Every transition of one order locks the
// same items, so two racing transitions have one winner.
func (s *OrderStore) transition(ctx context.Context, id string, now time.Time,
	decide func(o orders.Order) (orders.Transition, error),
) (orders.Order, error) {
	before, err := s.GetOrder(ctx, id)
	if err != nil {
		return orders.Order{}, err
	}
	demand := orders.Demand(before.Lines)
	ids := make([]string, len(demand))
	for i, d := range demand {
		ids[i] = d.ItemID
	}
	var out orders.Order
	var decideErr error
	err = s.items.UpdateItems(ctx, ids, func(items []inventory.Item) ([]inventory.Movement, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		o := s.orders[id]
		tr, derr := decide(clone(o))
		decideErr = derr
		if tr.Next == 0 {
			out = clone(o)
			return nil, nil
		}
		moves := make([]inventory.Movement, len(demand))
		for i, d := range demand {
			m, err := orders.Movement(tr.Kind, id, d, now)
			if err != nil {
				return nil, err
			}
			if orders.ReleasesHolding(tr.Kind) && items[i].MaxPerCustomer > 0 {
				s.holdings[holding{o.CustomerID, d.ItemID}] -= d.Quantity
			}
			moves[i] = m
		}
		o.Status, o.UpdateTime = tr.Next, now
		delete(s.pending, id)
		out = clone(o)
		return moves, nil
	})
	if err != nil {
		return orders.Order{}, err
	}
	return out, decideErr
}

// ConfirmOrder implements orders.Store.
func (s *OrderStore) ConfirmOrder(ctx context.Context, id string, now time.Time) (orders.Order, error) {
	return s.transition(ctx, id, now, func(o orders.Order) (orders.Transition, error) { return orders.ConfirmTransition(o, now) })
}

// CancelOrder implements orders.Store.
func (s *OrderStore) CancelOrder(ctx context.Context, id string, now time.Time) (orders.Order, error) {
	return s.transition(ctx, id, now, func(o orders.Order) (orders.Transition, error) { return orders.CancelTransition(o), nil })
}

// ExpireHolds implements orders.Store.
func (s *OrderStore) ExpireHolds(ctx context.Context, now time.Time, limit int) (int, error) {
	s.mu.RLock()
	var due []string
	for id := range s.pending {
		if o := s.orders[id]; !now.Before(o.ExpireTime) {
			due = append(due, id)
			if len(due) == limit {
				break
			}
		}
	}
	s.mu.RUnlock()
	n := 0
	for _, id := range due {
		expired := false
		_, err := s.transition(ctx, id, now, func(o orders.Order) (orders.Transition, error) {
			tr := orders.ExpireTransition(o, now) // nothing if confirmed or cancelled meanwhile
			expired = tr.Next != 0
			return tr, nil
		})
		if err != nil {
			return n, err
		}
		if expired {
			n++
		}
	}
	return n, nil
}

// PlaceBatch implements orders.Store. In memory each PlaceOrder is already
// one short critical section, so the batch is placed order by order, in
// slice order, which gives the same outcome as one transaction would.
func (s *OrderStore) PlaceBatch(ctx context.Context, batch []orders.Order, wanted func(i int) bool) ([]orders.BatchResult, error) {
	return orders.PlaceEach(ctx, batch, wanted, s.PlaceOrder), nil
}
