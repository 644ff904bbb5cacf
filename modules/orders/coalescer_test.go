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
