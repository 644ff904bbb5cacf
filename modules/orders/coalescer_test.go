package orders

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"go.uber.org/mock/gomock"
)

func orderOf(id string) Order {
	return Order{ID: id, CustomerID: "c", Status: StatusConfirmed, Lines: []Line{{itemA, 1}}}
}

// blockingStore lets a test hold the first batch while more purchases queue.
func blockingStore(t *testing.T) (*MockStore, chan struct{}, chan []Order) {
	store := NewMockStore(gomock.NewController(t))
	release := make(chan struct{})
	batches := make(chan []Order, 16)
	first := true
	var mu sync.Mutex
	store.EXPECT().PlaceBatch(gomock.Any(), gomock.Any(), gomock.Any()).DoAndReturn(func(_ context.Context, b []Order, _ func(int) bool) ([]BatchResult, error) {
		batches <- b
		mu.Lock()
		wait := first
		first = false
		mu.Unlock()
		if wait {
			<-release
		}
		out := make([]BatchResult, len(b))
		for i, o := range b {
			out[i] = BatchResult{Order: o}
		}
		return out, nil
	}).AnyTimes()
	return store, release, batches
}

func TestCoalescer_BatchesQueuedPurchasesInArrivalOrder(t *testing.T) {
	store, release, batches := blockingStore(t)
	c := NewCoalescer(store, CoalescerConfig{MaxBatch: 10, QueueSize: 10, IdleAfter: 10 * time.Millisecond})
	var wg sync.WaitGroup
	wg.Go(func() { _, _, _ = c.Place(context.Background(), itemA, orderOf("first")) })
	if b := <-batches; len(b) != 1 || b[0].ID != "first" {
		t.Fatalf("a lone purchase was batched as %v", b)
	}
	for _, id := range []string{"b", "c", "d"} {
		wg.Go(func() { _, _, _ = c.Place(context.Background(), itemA, orderOf(id)) })
		for c.QueueDepth() == 0 || (id == "c" && c.QueueDepth() < 2) || (id == "d" && c.QueueDepth() < 3) {
			time.Sleep(time.Millisecond)
		}
	}
	close(release)
	b := <-batches
	if len(b) != 3 || b[0].ID != "b" || b[1].ID != "c" || b[2].ID != "d" {
		t.Fatalf("second batch = %v, want b, c, d in arrival order", ids(b))
	}
	wg.Wait()
	if err := c.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func ids(list []Order) []string {
	out := make([]string, len(list))
	for i, o := range list {
		out[i] = o.ID
	}
	return out
}

func TestCoalescer_ShedsAtOnceWhenTheQueueIsFull(t *testing.T) {
	store, release, batches := blockingStore(t)
	c := NewCoalescer(store, CoalescerConfig{MaxBatch: 10, QueueSize: 2, IdleAfter: 10 * time.Millisecond})
	var wg sync.WaitGroup
	wg.Go(func() { _, _, _ = c.Place(context.Background(), itemA, orderOf("running")) })
	<-batches
	for _, id := range []string{"q1", "q2"} {
		wg.Go(func() { _, _, _ = c.Place(context.Background(), itemA, orderOf(id)) })
	}
	for c.QueueDepth() < 2 {
		time.Sleep(time.Millisecond)
	}
	if _, _, err := c.Place(context.Background(), itemA, orderOf("shed")); !errors.Is(err, ErrOverloaded) {
		t.Fatalf("purchase past a full queue: %v, want ErrOverloaded", err)
	}
	if c.Shed() != 1 {
		t.Fatalf("shed = %d", c.Shed())
	}
	close(release)
	wg.Wait()
	_ = c.Stop(context.Background())
}

func TestCoalescer_IdleItemsHoldNoGoroutine(t *testing.T) {
	store := NewMockStore(gomock.NewController(t))
	store.EXPECT().PlaceBatch(gomock.Any(), gomock.Any(), gomock.Any()).DoAndReturn(func(_ context.Context, b []Order, _ func(int) bool) ([]BatchResult, error) {
		return []BatchResult{{Order: b[0]}}, nil
	}).Times(2)
	c := NewCoalescer(store, CoalescerConfig{MaxBatch: 10, QueueSize: 10, IdleAfter: 5 * time.Millisecond})
	if _, _, err := c.Place(context.Background(), itemA, orderOf("x")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for c.Workers() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the worker of an idle item did not exit")
		}
		time.Sleep(time.Millisecond)
	}
	// A new purchase starts a new worker.
	if _, _, err := c.Place(context.Background(), itemA, orderOf("y")); err != nil {
		t.Fatal(err)
	}
	_ = c.Stop(context.Background())
}

func TestCoalescer_BatchFailureReachesEveryCaller(t *testing.T) {
	store := NewMockStore(gomock.NewController(t))
	store.EXPECT().PlaceBatch(gomock.Any(), gomock.Any(), gomock.Any()).Return(nil, ErrUnavailable)
	c := NewCoalescer(store, CoalescerConfig{MaxBatch: 10, QueueSize: 10})
	if _, _, err := c.Place(context.Background(), itemA, orderOf("x")); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("error = %v", err)
	}
	_ = c.Stop(context.Background())
	if _, _, err := c.Place(context.Background(), itemA, orderOf("late")); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("purchase after Stop: %v", err)
	}
}

func TestCoalescer_CancelledCallersAreNotPlaced(t *testing.T) {
	store, release, batches := blockingStore(t)
	c := NewCoalescer(store, CoalescerConfig{MaxBatch: 10, QueueSize: 10})
	var wg sync.WaitGroup
	wg.Go(func() { _, _, _ = c.Place(context.Background(), itemA, orderOf("running")) })
	<-batches
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { _, _, err := c.Place(ctx, itemA, orderOf("gave-up")); errc <- err }()
	for c.QueueDepth() < 1 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled caller got %v", err)
	}
	wg.Go(func() { _, _, _ = c.Place(context.Background(), itemA, orderOf("after")) })
	for c.QueueDepth() < 2 {
		time.Sleep(time.Millisecond)
	}
	close(release)
	if b := <-batches; len(b) != 1 || b[0].ID != "after" {
		t.Fatalf("next batch = %v; the cancelled order must be left out", ids(b))
	}
	wg.Wait()
	_ = c.Stop(context.Background())
}

func TestService_SingleItemOrdersGoThroughTheCoalescer(t *testing.T) {
	svc, store, _ := newService(t)
	c := NewCoalescer(store, CoalescerConfig{MaxBatch: 10, QueueSize: 10})
	svc.WithCoalescer(c)
	store.EXPECT().PlaceBatch(gomock.Any(), gomock.Len(1), gomock.Any()).DoAndReturn(func(_ context.Context, b []Order, _ func(int) bool) ([]BatchResult, error) {
		return []BatchResult{{Order: b[0], Replayed: true}}, nil
	})
	if _, replayed, err := svc.Place(context.Background(), alice, PlaceRequest{Lines: []Line{{itemA, 1}, {itemA, 2}}}); err != nil || !replayed {
		t.Fatalf("single-item order: replayed=%v err=%v", replayed, err)
	}
	store.EXPECT().PlaceOrder(gomock.Any(), gomock.Any()).DoAndReturn(func(_ context.Context, o Order) (Order, bool, error) { return o, false, nil })
	if _, _, err := svc.Place(context.Background(), alice, PlaceRequest{Lines: []Line{{itemA, 1}, {itemB, 1}}}); err != nil {
		t.Fatalf("multi-item order: %v", err)
	}
	_ = c.Stop(context.Background())
}

// stuckStore never finishes a batch until the batch's context ends, as a
// store waiting on a row lock would.
func stuckStore(t *testing.T) *MockStore {
	store := NewMockStore(gomock.NewController(t))
	store.EXPECT().PlaceBatch(gomock.Any(), gomock.Any(), gomock.Any()).DoAndReturn(func(ctx context.Context, _ []Order, _ func(int) bool) ([]BatchResult, error) {
		<-ctx.Done()
		return nil, fmt.Errorf("place batch: %w", ctx.Err())
	}).AnyTimes()
	return store
}

// When a batch stops at the caller's own deadline, the caller hears its
// deadline (and its context already says so), never a wrapped store error
// that a transport would take for a bug. Repeated because the batch's
// timer and the caller's fire at the same instant in either order.
func TestCoalescer_BatchStoppedAtCallerDeadlineAnswersDeadlineExceeded(t *testing.T) {
	c := NewCoalescer(stuckStore(t), CoalescerConfig{MaxBatch: 10, QueueSize: 10, IdleAfter: 10 * time.Millisecond, Timeout: time.Minute})
	for i := range 20 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
		_, _, err := c.Place(ctx, itemA, orderOf("late"))
		ctxErr := ctx.Err()
		cancel()
		if err != context.DeadlineExceeded || ctxErr != context.DeadlineExceeded { //nolint:errorlint // the exact sentinel is the contract
			t.Fatalf("attempt %d: Place = %v with ctx.Err() = %v, want context.DeadlineExceeded with both", i, err, ctxErr)
		}
	}
	if err := c.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// When the batch bound stops a batch while the caller still has time, the
// store was too slow: the caller hears a retryable unavailable.
func TestCoalescer_BatchStoppedAtItsBoundIsRetryable(t *testing.T) {
	c := NewCoalescer(stuckStore(t), CoalescerConfig{MaxBatch: 10, QueueSize: 10, IdleAfter: 10 * time.Millisecond, Timeout: 5 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, _, err := c.Place(ctx, itemA, orderOf("slow"))
	if !IsRetryable(err) || ctx.Err() != nil {
		t.Fatalf("Place = %v (ctx.Err() = %v), want a retryable unavailable with the caller's context live", err, ctx.Err())
	}
	if _, _, err := c.Place(context.Background(), itemA, orderOf("no deadline")); !IsRetryable(err) {
		t.Fatalf("Place without a deadline = %v, want a retryable unavailable", err)
	}
	if err := c.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func orderOfItem(id, item string) Order {
	return Order{ID: id, CustomerID: "c", Status: StatusConfirmed, Lines: []Line{{item, 1}}}
}

// busyAnswers answers a batch: ErrItemBusy for the orders of busy items,
// placed for the rest.
func busyAnswers(b []Order, busy map[string]bool) []BatchResult {
	out := make([]BatchResult, len(b))
	for i, o := range b {
		out[i] = BatchResult{Order: o}
		if busy[o.Lines[0].ItemID] {
			out[i] = BatchResult{Err: ErrItemBusy}
		}
	}
	return out
}

func TestCoalescer_PurchasesOfABusyItemGoFirstIntoTheNextBatch(t *testing.T) {
	store := NewMockStore(gomock.NewController(t))
	c := NewCoalescer(store, CoalescerConfig{Lanes: 1, MaxBatch: 10, QueueSize: 10, IdleAfter: 10 * time.Millisecond})
	release := make(chan struct{})
	var batches [][]string
	var wg sync.WaitGroup
	place := func(o Order) {
		wg.Go(func() {
			if _, _, err := c.Place(context.Background(), o.Lines[0].ItemID, o); err != nil {
				t.Errorf("Place(%s) = %v", o.ID, err)
			}
		})
	}
	gomock.InOrder(
		// 1: holds the lane while a1, b1 and a2 queue.
		store.EXPECT().PlaceBatch(gomock.Any(), gomock.Any(), gomock.Any()).DoAndReturn(func(_ context.Context, b []Order, _ func(int) bool) ([]BatchResult, error) {
			batches = append(batches, ids(b))
			<-release
			return busyAnswers(b, nil), nil
		}),
		// 2: item A is locked elsewhere; a3 arrives while this batch runs.
		store.EXPECT().PlaceBatch(gomock.Any(), gomock.Any(), gomock.Any()).DoAndReturn(func(_ context.Context, b []Order, _ func(int) bool) ([]BatchResult, error) {
			batches = append(batches, ids(b))
			place(orderOfItem("a3", itemA))
			for c.QueueDepth() < 1 {
				time.Sleep(time.Millisecond)
			}
			return busyAnswers(b, map[string]bool{itemA: true}), nil
		}),
		// 3: item A is free again.
		store.EXPECT().PlaceBatch(gomock.Any(), gomock.Any(), gomock.Any()).DoAndReturn(func(_ context.Context, b []Order, _ func(int) bool) ([]BatchResult, error) {
			batches = append(batches, ids(b))
			return busyAnswers(b, nil), nil
		}),
	)
	place(orderOfItem("x", itemB))
	for c.Workers() < 1 || c.QueueDepth() > 0 {
		time.Sleep(time.Millisecond)
	}
	for i, o := range []Order{orderOfItem("a1", itemA), orderOfItem("b1", itemB), orderOfItem("a2", itemA)} {
		place(o)
		for c.QueueDepth() < int64(i+1) {
			time.Sleep(time.Millisecond)
		}
	}
	close(release)
	wg.Wait()
	want := "[[x] [a1 b1 a2] [a1 a2 a3]]"
	if got := fmt.Sprint(batches); got != want {
		t.Fatalf("batches = %s, want %s: a busy item's purchases go first into the next batch, in arrival order", got, want)
	}
	if c.Busy() != 2 {
		t.Fatalf("Busy() = %d, want 2", c.Busy())
	}
	if err := c.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestCoalescer_AnItemBusyTimeAfterTimeIsPlacedAloneWithAWaitingLock(t *testing.T) {
	store := NewMockStore(gomock.NewController(t))
	c := NewCoalescer(store, CoalescerConfig{Lanes: 1, MaxBatch: 10, QueueSize: 10, IdleAfter: 10 * time.Millisecond})
	placed := orderOf("a1")
	placed.Status = StatusPending
	gomock.InOrder(
		store.EXPECT().PlaceBatch(gomock.Any(), gomock.Len(1), gomock.Any()).DoAndReturn(func(_ context.Context, b []Order, _ func(int) bool) ([]BatchResult, error) {
			return busyAnswers(b, map[string]bool{itemA: true}), nil
		}).Times(maxBusy),
		store.EXPECT().PlaceOrder(gomock.Any(), orderOf("a1")).Return(placed, false, nil),
	)
	got, _, err := c.Place(context.Background(), itemA, orderOf("a1"))
	if err != nil || got.Status != StatusPending {
		t.Fatalf("Place = %v, %v; want the order PlaceOrder returned", got, err)
	}
	if c.Busy() != maxBusy {
		t.Fatalf("Busy() = %d, want %d", c.Busy(), maxBusy)
	}
	if err := c.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// lockedA is a store on which item A is locked by another transaction.
// Batches find A busy while busy(n) says so for the n-th batch (from 1),
// or, with busy nil, until an order of A has been placed alone, which
// waits for the test to close release. It logs every call.
type lockedA struct {
	mu          sync.Mutex
	calls       [][]string
	batches     int
	alonePlaced bool
	waitingLock chan struct{} // closed when PlaceOrder waits for the lock
	release     chan struct{} // the test closes it to hand the lock over
}

func newLockedA(t *testing.T, busy func(n int) bool) (*MockStore, *lockedA) {
	store := NewMockStore(gomock.NewController(t))
	l := &lockedA{waitingLock: make(chan struct{}), release: make(chan struct{})}
	store.EXPECT().PlaceBatch(gomock.Any(), gomock.Any(), gomock.Any()).DoAndReturn(func(_ context.Context, b []Order, _ func(int) bool) ([]BatchResult, error) {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.calls = append(l.calls, ids(b))
		l.batches++
		isBusy := !l.alonePlaced
		if busy != nil {
			isBusy = busy(l.batches)
		}
		return busyAnswers(b, map[string]bool{itemA: isBusy}), nil
	}).AnyTimes()
	store.EXPECT().PlaceOrder(gomock.Any(), gomock.Any()).DoAndReturn(func(_ context.Context, o Order) (Order, bool, error) {
		close(l.waitingLock)
		<-l.release
		l.mu.Lock()
		l.alonePlaced = true
		l.calls = append(l.calls, []string{o.ID + " placed alone"})
		l.mu.Unlock()
		return o, false, nil
	})
	return store, l
}

func (l *lockedA) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return fmt.Sprint(l.calls)
}

func TestCoalescer_AnItemPlacedWithAWaitingLockHoldsUpOnlyItsOwnPurchases(t *testing.T) {
	store, log := newLockedA(t, nil)
	c := NewCoalescer(store, CoalescerConfig{Lanes: 1, MaxBatch: 10, QueueSize: 10, IdleAfter: 10 * time.Millisecond})
	var wg sync.WaitGroup
	place := func(o Order) {
		wg.Go(func() {
			if _, _, err := c.Place(context.Background(), o.Lines[0].ItemID, o); err != nil {
				t.Errorf("Place(%s) = %v", o.ID, err)
			}
		})
	}
	place(orderOfItem("a1", itemA))
	<-log.waitingLock
	place(orderOfItem("a2", itemA))
	for c.Held() < 1 {
		time.Sleep(time.Millisecond)
	}
	if _, _, err := c.Place(context.Background(), itemB, orderOfItem("b1", itemB)); err != nil {
		t.Fatalf("a purchase of another item while item A waits for its lock: %v", err)
	}
	if got, want := log.String(), "[[a1] [a1] [a1] [b1]]"; got != want {
		t.Fatalf("batches while a1 waits = %s, want %s: a2 must wait behind a1, b1 must not", got, want)
	}
	close(log.release)
	wg.Wait()
	if got, want := log.String(), "[[a1] [a1] [a1] [b1] [a1 placed alone] [a2]]"; got != want {
		t.Fatalf("store calls = %s, want %s", got, want)
	}
	if err := c.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// A batch bound cuts a busy item's carried purchases in two; when the first
// part is busy again, it still goes back ahead of the second.
func TestCoalescer_BusyPurchasesCutByTheBatchBoundKeepTheirOrder(t *testing.T) {
	// Busy for a1's three tries, then for the first batch after it.
	store, log := newLockedA(t, func(n int) bool { return n <= maxBusy+1 })
	c := NewCoalescer(store, CoalescerConfig{Lanes: 1, MaxBatch: 2, QueueSize: 10, IdleAfter: 10 * time.Millisecond})
	var wg sync.WaitGroup
	for _, id := range []string{"a1", "a2", "a3", "a4"} {
		wg.Go(func() {
			if _, _, err := c.Place(context.Background(), itemA, orderOf(id)); err != nil {
				t.Errorf("Place(%s) = %v", id, err)
			}
		})
		if id == "a1" {
			<-log.waitingLock
			continue
		}
		for held := int64(id[1] - '1'); c.Held() < held; {
			time.Sleep(time.Millisecond) // until the lane took it and holds it back
		}
	}
	close(log.release)
	wg.Wait()
	if got, want := log.String(), "[[a1] [a1] [a1] [a1 placed alone] [a2 a3] [a2 a3] [a4]]"; got != want {
		t.Fatalf("store calls = %s, want %s", got, want)
	}
	if err := c.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
}
