package orders

import (
	"context"
	"fmt"
	"time"
)

//go:generate go tool mockgen -typed -destination=mock_store_test.go -package=orders . Store

// Store persists orders and moves their stock atomically. Every method that
// moves stock appends ledger rows in the same transaction.
type Store interface {
	// PlaceOrder takes the stock for every line of o, all or nothing, and
	// stores o. o is fully formed by the service (id, status, times, hash).
	//
	// With an idempotency key, a stored order with the same customer and key
	// is returned instead, with replayed true, when its RequestHash matches;
	// otherwise ErrIdempotencyKeyReused. Concurrent duplicates store one order.
	//
	// Errors: inventory.ErrItemNotFound, *inventory.InsufficientStockError,
	// *LimitExceededError, ErrIdempotencyKeyReused, ErrUnavailable.
	PlaceOrder(ctx context.Context, o Order) (placed Order, replayed bool, err error)
	// PlaceBatch places orders that all buy or hold one and the same item,
	// in one transaction with one lock on the item, as if placed one after
	// another in slice order: each is checked against the stock and limits
	// the earlier ones left. Once it holds the lock it asks wanted(i) for
	// each order and leaves out those no longer wanted (their callers gave
	// up), answering them with context.Canceled. A store may also leave out
	// the orders of an item that another transaction holds locked, rather
	// than wait for it, answering them with ErrItemBusy. It returns one result per
	// order; an error means the whole batch failed and none was placed (or,
	// for ErrUnavailable, that the outcome is unknown: retry with the same
	// idempotency keys).
	PlaceBatch(ctx context.Context, batch []Order, wanted func(i int) bool) ([]BatchResult, error)
	// GetOrder returns ErrOrderNotFound when no order has the id.
	GetOrder(ctx context.Context, id string) (Order, error)
	// ListOrders returns up to f.Limit orders matching f, newest first.
	ListOrders(ctx context.Context, f ListFilter) ([]Order, error)
	// ConfirmOrder moves a PENDING order's stock from reserved to sold. An
	// already CONFIRMED order is returned unchanged. A PENDING order whose
	// hold ran out by now is expired (its stock returned) and ErrHoldExpired
	// returned; so is an EXPIRED one. A CANCELLED one gives ErrNotPending.
	ConfirmOrder(ctx context.Context, id string, now time.Time) (Order, error)
	// CancelOrder returns a PENDING order's reserved stock, or a CONFIRMED
	// order's sold stock, to available. Cancelled and expired orders are
	// returned unchanged.
	CancelOrder(ctx context.Context, id string, now time.Time) (Order, error)
	// ExpireHolds expires up to limit PENDING orders whose hold ran out by
	// now, returning their stock, and says how many it expired.
	ExpireHolds(ctx context.Context, now time.Time, limit int) (int, error)
}

// BatchResult is one order's outcome in PlaceBatch: what PlaceOrder would
// have returned for it.
type BatchResult struct {
	Order    Order
	Replayed bool
	Err      error
}

// ErrItemBusy is a PlaceBatch result: the order's item was locked by
// another transaction, so the batch left the order out and did nothing for
// it. Placing it again is safe.
var ErrItemBusy = fmt.Errorf("%w: item locked by another transaction", ErrUnavailable)

// PlaceEach answers a PlaceBatch the simple way: each wanted order placed
// on its own through place, in slice order, so the outcome is the one a
// single transaction would give. Orders no longer wanted get
// context.Canceled.
func PlaceEach(ctx context.Context, batch []Order, wanted func(i int) bool,
	place func(context.Context, Order) (Order, bool, error),
) []BatchResult {
	out := make([]BatchResult, len(batch))
	for i, o := range batch {
		if wanted != nil && !wanted(i) {
			out[i] = BatchResult{Err: context.Canceled}
			continue
		}
		placed, replayed, err := place(ctx, o)
		out[i] = BatchResult{Order: placed, Replayed: replayed, Err: err}
	}
	return out
}

// ListFilter selects orders for ListOrders.
type ListFilter struct {
	CustomerID string // empty: every customer
	ItemID     string // empty: every item
	BeforeID   string // only orders with smaller ids (older); empty: from the newest
	Limit      int
}
