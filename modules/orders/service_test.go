package orders

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/mock/gomock"

	"github.com/stockguard/stockguard/modules/inventory"
	"github.com/stockguard/stockguard/platform/validation"
)

const (
	itemA   = "0192f0c4-0000-7000-8000-00000000000a"
	itemB   = "0192f0c4-0000-7000-8000-00000000000b"
	orderID = "0192f0c4-0000-7000-8000-0000000000f1"
)

var (
	alice = Caller{CustomerID: "alice"}
	bob   = Caller{CustomerID: "bob"}
	admin = Caller{CustomerID: "ops", Admin: true}
)

func newService(t *testing.T) (*Service, *MockStore, time.Time) {
	store := NewMockStore(gomock.NewController(t))
	svc := NewService(store)
	now := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	svc.now = func() time.Time { return now }
	return svc, store, now
}

func TestPlaceOrder_BuyNowIsConfirmed(t *testing.T) {
	svc, store, now := newService(t)
	store.EXPECT().PlaceOrder(gomock.Any(), gomock.Any()).DoAndReturn(func(_ context.Context, o Order) (Order, bool, error) {
		if o.Status != StatusConfirmed || o.CustomerID != "alice" || !o.ExpireTime.IsZero() || !o.CreateTime.Equal(now) || o.ID == "" || o.RequestHash == "" {
			t.Errorf("order = %+v", o)
		}
		return o, false, nil
	})
	if _, err := svc.PlaceOrder(context.Background(), alice, PlaceRequest{Lines: []Line{{itemA, 1}}}); err != nil {
		t.Fatal(err)
	}
}

func TestPlaceOrder_HoldIsPendingUntilExpiry(t *testing.T) {
	svc, store, now := newService(t)
	store.EXPECT().PlaceOrder(gomock.Any(), gomock.Any()).DoAndReturn(func(_ context.Context, o Order) (Order, bool, error) {
		if o.Status != StatusPending || !o.ExpireTime.Equal(now.Add(90*time.Second)) {
			t.Errorf("order = %+v", o)
		}
		return o, false, nil
	})
	if _, err := svc.PlaceOrder(context.Background(), alice, PlaceRequest{Lines: []Line{{itemA, 1}}, HoldSeconds: 90}); err != nil {
		t.Fatal(err)
	}
}

func TestPlaceOrder_InvalidRequestsNeverReachTheStore(t *testing.T) {
	svc, _, _ := newService(t) // the mock fails the test on any call
	tests := []struct {
		name   string
		req    PlaceRequest
		fields []string
	}{
		{"no lines", PlaceRequest{}, []string{"lines"}},
		{"bad item and quantity", PlaceRequest{Lines: []Line{{"nope", 0}}}, []string{"lines[0].item_id", "lines[0].quantity"}},
		{"lines of one item add up past the maximum", PlaceRequest{Lines: []Line{{itemA, inventory.MaxStock}, {itemA, 1}}}, []string{"lines[1].quantity"}},
		{"hold too long", PlaceRequest{Lines: []Line{{itemA, 1}}, HoldSeconds: MaxHoldSeconds + 1}, []string{"hold_seconds"}},
		{"key with spaces", PlaceRequest{Lines: []Line{{itemA, 1}}, IdempotencyKey: "a b"}, []string{"idempotency_key"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := svc.PlaceOrder(context.Background(), alice, tt.req)
			var ve *validation.Error
			if !errors.As(err, &ve) || len(ve.Violations) != len(tt.fields) {
				t.Fatalf("error = %v, want violations on %v", err, tt.fields)
			}
			for i, f := range tt.fields {
				if ve.Violations[i].Field != f {
					t.Fatalf("violation %d on %q, want %q", i, ve.Violations[i].Field, f)
				}
			}
		})
	}
	if _, err := svc.PlaceOrder(context.Background(), Caller{}, PlaceRequest{Lines: []Line{{itemA, 1}}}); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("anonymous order error = %v", err)
	}
}

func TestPlaceOrder_StoreFailuresReachTheCaller(t *testing.T) {
	failures := []error{
		&inventory.InsufficientStockError{ItemID: itemA, Requested: 2, Available: 1},
		&LimitExceededError{ItemID: itemA, Limit: 2, Held: 2, Requested: 1},
		inventory.ErrItemNotFound, ErrIdempotencyKeyReused, ErrUnavailable,
		context.DeadlineExceeded, errors.New("connection reset"),
	}
	for _, failure := range failures {
		t.Run(failure.Error(), func(t *testing.T) {
			svc, store, _ := newService(t)
			store.EXPECT().PlaceOrder(gomock.Any(), gomock.Any()).Return(Order{}, false, failure)
			_, err := svc.PlaceOrder(context.Background(), alice, PlaceRequest{Lines: []Line{{itemA, 2}}})
			if !errors.Is(err, failure) {
				t.Fatalf("error = %v, want %v", err, failure)
			}
		})
	}
}

func TestRequestHash_SameDemandSameHash(t *testing.T) {
	a := PlaceRequest{Lines: []Line{{itemA, 1}, {itemB, 2}, {itemA, 1}}}
	b := PlaceRequest{Lines: []Line{{itemB, 2}, {itemA, 2}}}
	c := PlaceRequest{Lines: []Line{{itemB, 2}, {itemA, 2}}, HoldSeconds: 60}
	if a.Hash() != b.Hash() {
		t.Fatal("equal demand hashed differently")
	}
	if b.Hash() == c.Hash() {
		t.Fatal("a hold and a purchase hashed alike")
	}
}

func TestDemand_SumsLinesPerItemInLockOrder(t *testing.T) {
	got := Demand([]Line{{itemB, 1}, {itemA, 2}, {itemB, 3}})
	if len(got) != 2 || got[0] != (Line{itemA, 2}) || got[1] != (Line{itemB, 4}) {
		t.Fatalf("Demand = %v", got)
	}
}

func TestGetOrder_OtherCustomersOrdersAreNotFound(t *testing.T) {
	svc, store, _ := newService(t)
	aliceOrder := Order{ID: orderID, CustomerID: "alice", Status: StatusConfirmed}
	store.EXPECT().GetOrder(gomock.Any(), orderID).Return(aliceOrder, nil).Times(3)
	if _, err := svc.GetOrder(context.Background(), bob, orderID); !errors.Is(err, ErrOrderNotFound) {
		t.Fatalf("bob reading alice's order: %v, want ErrOrderNotFound", err)
	}
	if o, err := svc.GetOrder(context.Background(), alice, orderID); err != nil || o.ID != orderID {
		t.Fatalf("alice reading her order: %v", err)
	}
	if _, err := svc.GetOrder(context.Background(), admin, orderID); err != nil {
		t.Fatalf("admin reading alice's order: %v", err)
	}
}

func TestConfirmOrder_OnlyTheOwnerConfirms(t *testing.T) {
	svc, store, now := newService(t)
	pending := Order{ID: orderID, CustomerID: "alice", Status: StatusPending}
	store.EXPECT().GetOrder(gomock.Any(), orderID).Return(pending, nil).Times(3)
	if _, err := svc.ConfirmOrder(context.Background(), bob, orderID); !errors.Is(err, ErrOrderNotFound) {
		t.Fatalf("bob: %v", err)
	}
	if _, err := svc.ConfirmOrder(context.Background(), admin, orderID); !errors.Is(err, ErrNotOwner) {
		t.Fatalf("admin: %v", err)
	}
	store.EXPECT().ConfirmOrder(gomock.Any(), orderID, now).Return(Order{}, ErrHoldExpired)
	if _, err := svc.ConfirmOrder(context.Background(), alice, orderID); !errors.Is(err, ErrHoldExpired) {
		t.Fatalf("alice: %v", err)
	}
}

func TestCancelOrder_AdminsMayCancelAnyOrder(t *testing.T) {
	svc, store, now := newService(t)
	confirmed := Order{ID: orderID, CustomerID: "alice", Status: StatusConfirmed}
	store.EXPECT().GetOrder(gomock.Any(), orderID).Return(confirmed, nil).Times(2)
	if _, err := svc.CancelOrder(context.Background(), bob, orderID); !errors.Is(err, ErrOrderNotFound) {
		t.Fatalf("bob: %v", err)
	}
	store.EXPECT().CancelOrder(gomock.Any(), orderID, now).Return(Order{ID: orderID, Status: StatusCancelled}, nil)
	if o, err := svc.CancelOrder(context.Background(), admin, orderID); err != nil || o.Status != StatusCancelled {
		t.Fatalf("admin: %+v, %v", o, err)
	}
}

func TestListOrders_CustomersSeeOnlyTheirOwn(t *testing.T) {
	svc, store, _ := newService(t)
	store.EXPECT().ListOrders(gomock.Any(), ListFilter{CustomerID: "alice", Limit: inventory.DefaultPageSize + 1}).Return(nil, nil)
	if _, err := svc.ListOrders(context.Background(), alice, ListParams{}); err != nil {
		t.Fatal(err)
	}
	var ve *validation.Error
	if _, err := svc.ListOrders(context.Background(), alice, ListParams{CustomerID: "bob"}); !errors.As(err, &ve) {
		t.Fatalf("alice listing bob's orders: %v", err)
	}
	store.EXPECT().ListOrders(gomock.Any(), ListFilter{CustomerID: "bob", ItemID: itemA, Limit: inventory.DefaultPageSize + 1}).Return(nil, nil)
	if _, err := svc.ListOrders(context.Background(), admin, ListParams{CustomerID: "bob", ItemID: itemA}); err != nil {
		t.Fatal(err)
	}
}

func TestSweeper_ExpiresInBatchesUntilDone(t *testing.T) {
	store := NewMockStore(gomock.NewController(t))
	s := NewSweeper(store, SweeperConfig{Interval: time.Hour, BatchSize: 10}, zapNop())
	gomock.InOrder(
		store.EXPECT().ExpireHolds(gomock.Any(), gomock.Any(), 10).Return(10, nil),
		store.EXPECT().ExpireHolds(gomock.Any(), gomock.Any(), 10).Return(10, nil),
		store.EXPECT().ExpireHolds(gomock.Any(), gomock.Any(), 10).Return(3, nil),
	)
	if n := s.Sweep(context.Background()); n != 23 {
		t.Fatalf("Sweep() = %d, want 23", n)
	}
}

func TestSweeper_StoreFailureEndsTheSweepAndIsRetriedNextTick(t *testing.T) {
	store := NewMockStore(gomock.NewController(t))
	s := NewSweeper(store, SweeperConfig{Interval: time.Hour, BatchSize: 10}, zapNop())
	store.EXPECT().ExpireHolds(gomock.Any(), gomock.Any(), 10).Return(0, ErrUnavailable)
	if n := s.Sweep(context.Background()); n != 0 {
		t.Fatalf("Sweep() = %d", n)
	}
}

func TestSweeper_StartStopLeavesNoGoroutine(t *testing.T) {
	store := NewMockStore(gomock.NewController(t))
	store.EXPECT().ExpireHolds(gomock.Any(), gomock.Any(), gomock.Any()).Return(0, nil).AnyTimes()
	s := NewSweeper(store, SweeperConfig{Interval: time.Millisecond, BatchSize: 10}, zapNop())
	s.Start()
	s.Start() // idempotent
	time.Sleep(5 * time.Millisecond)
	if err := s.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := s.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
}
