package orders

import (
	"errors"
	"testing"
	"time"

	"github.com/stockguard/stockguard/modules/inventory"
)

func TestTransitions_TableOfEveryStatus(t *testing.T) {
	now := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	pending := Order{Status: StatusPending, ExpireTime: now.Add(time.Minute)}
	overdue := Order{Status: StatusPending, ExpireTime: now}
	tests := []struct {
		name string
		got  Transition
		err  error
		want Transition
		werr error
	}{
		{"confirm pending", must(ConfirmTransition(pending, now)), nil, Transition{StatusConfirmed, inventory.MovementConfirm}, nil},
		{"confirm at the deadline", first(ConfirmTransition(overdue, now)), second(ConfirmTransition(overdue, now)), Transition{StatusExpired, inventory.MovementExpire}, ErrHoldExpired},
		{"confirm confirmed", must(ConfirmTransition(Order{Status: StatusConfirmed}, now)), nil, Transition{}, nil},
		{"confirm expired", first(ConfirmTransition(Order{Status: StatusExpired}, now)), second(ConfirmTransition(Order{Status: StatusExpired}, now)), Transition{}, ErrHoldExpired},
		{"confirm cancelled", first(ConfirmTransition(Order{Status: StatusCancelled}, now)), second(ConfirmTransition(Order{Status: StatusCancelled}, now)), Transition{}, ErrNotPending},
		{"cancel pending", CancelTransition(pending), nil, Transition{StatusCancelled, inventory.MovementRelease}, nil},
		{"cancel confirmed", CancelTransition(Order{Status: StatusConfirmed}), nil, Transition{StatusCancelled, inventory.MovementCancel}, nil},
		{"cancel cancelled", CancelTransition(Order{Status: StatusCancelled}), nil, Transition{}, nil},
		{"expire overdue", ExpireTransition(overdue, now), nil, Transition{StatusExpired, inventory.MovementExpire}, nil},
		{"expire not yet due", ExpireTransition(pending, now), nil, Transition{}, nil},
		{"expire confirmed", ExpireTransition(Order{Status: StatusConfirmed}, now), nil, Transition{}, nil},
	}
	for _, tt := range tests {
		if tt.got != tt.want || !errors.Is(tt.err, tt.werr) {
			t.Errorf("%s: got %+v, %v; want %+v, %v", tt.name, tt.got, tt.err, tt.want, tt.werr)
		}
	}
}

func TestMovement_KeepsTheItemsSumsConserved(t *testing.T) {
	for _, kind := range []inventory.MovementKind{inventory.MovementConfirm, inventory.MovementRelease, inventory.MovementExpire, inventory.MovementCancel} {
		m, err := Movement(kind, "o", Line{ItemID: "i", Quantity: 3}, time.Time{})
		if err != nil || m.Available+m.Reserved+m.Sold != 0 {
			t.Errorf("%s moves %+v, %v; a transition must move units, not create them", kind, m, err)
		}
	}
	if _, err := Movement(inventory.MovementAdjust, "o", Line{}, time.Time{}); err == nil {
		t.Error("adjust is not an order transition")
	}
}

func must(tr Transition, err error) Transition {
	if err != nil {
		panic(err)
	}
	return tr
}

func first(tr Transition, _ error) Transition { return tr }
func second(_ Transition, err error) error    { return err }
