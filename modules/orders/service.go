package orders

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/stockguard/stockguard/modules/inventory"
	"github.com/stockguard/stockguard/platform/validation"
)

// Service runs the order use cases: it validates input, enforces who may see
// and change an order, and leaves atomicity to the Store.
type Service struct {
	store     Store
	coalescer *Coalescer // nil: every order takes its own transaction
	now       func() time.Time
}

// NewService returns a Service over store.
func NewService(store Store) *Service {
	return &Service{store: store, now: time.Now}
}

// WithCoalescer routes single-item purchases through c, which commits
// many purchases of a hot item in one transaction.
func (s *Service) WithCoalescer(c *Coalescer) *Service {
	s.coalescer = c
	return s
}

// PlaceOrder places an order for the caller.
func (s *Service) PlaceOrder(ctx context.Context, caller Caller, req PlaceRequest) (Order, error) {
	o, _, err := s.Place(ctx, caller, req)
	return o, err
}

// Place is PlaceOrder that also says whether the order was a replay of an
// earlier request with the same idempotency key.
func (s *Service) Place(ctx context.Context, caller Caller, req PlaceRequest) (placed Order, replayed bool, err error) {
	if caller.CustomerID == "" {
		return Order{}, false, ErrUnauthenticated
	}
	if err := req.Validate(); err != nil {
		return Order{}, false, err
	}
	id, err := uuid.NewV7()
	if err != nil {
		return Order{}, false, fmt.Errorf("new order id: %w", err)
	}
	now := s.now().UTC().Truncate(time.Microsecond)
	o := Order{
		ID:             id.String(),
		CustomerID:     caller.CustomerID,
		Status:         StatusConfirmed,
		Lines:          append([]Line(nil), req.Lines...),
		IdempotencyKey: req.IdempotencyKey,
		RequestHash:    req.Hash(),
		CreateTime:     now,
		UpdateTime:     now,
	}
	if req.HoldSeconds > 0 {
		o.Status = StatusPending
		o.ExpireTime = now.Add(time.Duration(req.HoldSeconds) * time.Second)
	}
	if s.coalescer != nil {
		if d := Demand(o.Lines); len(d) == 1 {
			return s.coalescer.Place(ctx, d[0].ItemID, o)
		}
	}
	return s.store.PlaceOrder(ctx, o)
}

// GetOrder returns an order the caller may see. Orders of other customers
// are reported as not found to customers, so their existence is not leaked.
func (s *Service) GetOrder(ctx context.Context, caller Caller, id string) (Order, error) {
	if err := inventory.ValidateID("order_id", id); err != nil {
		return Order{}, err
	}
	o, err := s.store.GetOrder(ctx, id)
	if err != nil {
		return Order{}, err
	}
	if !caller.Admin && !caller.owns(o) {
		return Order{}, ErrOrderNotFound
	}
	return o, nil
}

// ListParams selects one page of orders.
type ListParams struct {
	PageSize   int
	PageToken  string
	CustomerID string // admins only
	ItemID     string
}

// OrderPage is one page of orders and the token of the next.
type OrderPage struct {
	Orders        []Order
	NextPageToken string
}

// ListOrders lists the caller's orders (any customer's, for admins), newest first.
func (s *Service) ListOrders(ctx context.Context, caller Caller, p ListParams) (OrderPage, error) {
	size, err := inventory.PageSize(p.PageSize)
	if err != nil {
		return OrderPage{}, err
	}
	before, err := inventory.DecodePageToken(p.PageToken)
	if err != nil {
		return OrderPage{}, err
	}
	f := ListFilter{CustomerID: caller.CustomerID, ItemID: p.ItemID, BeforeID: before, Limit: size + 1}
	if caller.Admin {
		f.CustomerID = p.CustomerID
	} else if p.CustomerID != "" && p.CustomerID != caller.CustomerID {
		var v validation.Error
		v.Add("customer_id", "only admins may list other customers' orders; leave it empty")
		return OrderPage{}, v.Err()
	}
	if f.CustomerID == "" && !caller.Admin {
		return OrderPage{}, ErrUnauthenticated
	}
	if p.ItemID != "" {
		if err := inventory.ValidateID("item_id", p.ItemID); err != nil {
			return OrderPage{}, err
		}
	}
	list, err := s.store.ListOrders(ctx, f)
	if err != nil {
		return OrderPage{}, err
	}
	page := OrderPage{Orders: list}
	if len(list) > size {
		page.Orders = list[:size]
		page.NextPageToken = inventory.EncodePageToken(list[size-1].ID)
	}
	return page, nil
}

// ConfirmOrder confirms the caller's own PENDING order.
func (s *Service) ConfirmOrder(ctx context.Context, caller Caller, id string) (Order, error) {
	o, err := s.GetOrder(ctx, caller, id)
	if err != nil {
		return Order{}, err
	}
	if !caller.owns(o) {
		return Order{}, ErrNotOwner
	}
	return s.store.ConfirmOrder(ctx, id, s.now().UTC())
}

// CancelOrder cancels an order the caller owns (any order, for admins) and
// returns its stock. Cancelling twice returns the same order.
func (s *Service) CancelOrder(ctx context.Context, caller Caller, id string) (Order, error) {
	if _, err := s.GetOrder(ctx, caller, id); err != nil {
		return Order{}, err
	}
	return s.store.CancelOrder(ctx, id, s.now().UTC())
}

// IsRetryable reports whether err means the request changed nothing and may
// be sent again as it is.
func IsRetryable(err error) bool {
	return errors.Is(err, ErrUnavailable) || errors.Is(err, inventory.ErrUnavailable)
}
