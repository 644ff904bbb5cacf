package orders

import (
	"fmt"
	"time"

	"github.com/stockguard/stockguard/modules/inventory"
)

// Transition is what happens to an order: its next status and the ledger
// kind of the stock it moves. A zero Next leaves the order as it is.
type Transition struct {
	Next Status
	Kind inventory.MovementKind
}

// ConfirmTransition decides what confirming o at now does. Every store
// applies it under its own locks, so they all behave alike: a confirmed
// order stays as it is; an expired one, or a pending one past its
// deadline (which is expired now), gives ErrHoldExpired; a cancelled one
// ErrNotPending.
func ConfirmTransition(o Order, now time.Time) (Transition, error) {
	switch o.Status {
	case StatusConfirmed:
		return Transition{}, nil
	case StatusExpired:
		return Transition{}, ErrHoldExpired
	case StatusCancelled:
		return Transition{}, ErrNotPending
	}
	if !now.Before(o.ExpireTime) {
		return Transition{StatusExpired, inventory.MovementExpire}, ErrHoldExpired
	}
	return Transition{StatusConfirmed, inventory.MovementConfirm}, nil
}

// CancelTransition decides what cancelling o does: a pending order releases
// its reservation, a confirmed one is refunded, anything else stays.
func CancelTransition(o Order) Transition {
	switch o.Status {
	case StatusPending:
		return Transition{StatusCancelled, inventory.MovementRelease}
	case StatusConfirmed:
		return Transition{StatusCancelled, inventory.MovementCancel}
	}
	return Transition{}
}

// ExpireTransition decides what the sweeper does to o at now.
func ExpireTransition(o Order, now time.Time) Transition {
	if o.Status != StatusPending || now.Before(o.ExpireTime) {
		return Transition{}
	}
	return Transition{StatusExpired, inventory.MovementExpire}
}

// Movement is the stock movement of one demand line of order orderID for
// a transition of kind.
func Movement(kind inventory.MovementKind, orderID string, d Line, at time.Time) (inventory.Movement, error) {
	m := inventory.Movement{ItemID: d.ItemID, OrderID: orderID, Kind: kind, CreateTime: at}
	switch kind {
	case inventory.MovementConfirm:
		m.Reserved, m.Sold = -d.Quantity, d.Quantity
	case inventory.MovementRelease, inventory.MovementExpire:
		m.Reserved, m.Available = -d.Quantity, d.Quantity
	case inventory.MovementCancel:
		m.Sold, m.Available = -d.Quantity, d.Quantity
	default:
		return m, fmt.Errorf("orders: %q is not a transition", kind)
	}
	return m, nil
}

// ReleasesHolding reports whether a transition of kind gives the units
// back to the customer's per-item limit.
func ReleasesHolding(kind inventory.MovementKind) bool { return kind != inventory.MovementConfirm }
