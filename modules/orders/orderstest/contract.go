// Package orderstest is the contract every pair of inventory and orders
// store adapters must pass. Each adapter's tests call Run; the same
// scenarios, races included, then hold for PostgreSQL and for memory.
//
// It imports only the domain packages and the standard library's testing.
package orderstest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/stockguard/stockguard/modules/inventory"
	"github.com/stockguard/stockguard/modules/orders"
)

// Stores is one adapter's stores over the same data.
type Stores struct {
	Items   inventory.Store
	Orders  orders.Store
	Auditor inventory.Auditor
}

// Run runs every contract scenario, each against fresh stores.
func Run(t *testing.T, newStores func(t *testing.T) Stores) {
	scenarios := []struct {
		name string
		run  func(t *testing.T, h *harness)
	}{
		{"ThousandBuyersOfAHundredUnits_ExactlyAHundredWin", thousandBuyers},
		{"LinesOfOneItemAreSummedBeforeTheCheck", linesSummed},
		{"MultiLineOrdersAreAllOrNothing", allOrNothing},
		{"OppositeMultiLineOrders_NoDeadlockReachesTheCaller", oppositeOrders},
		{"UnknownItemFailsWithoutTakingStock", unknownItem},
		{"HoldConfirmMovesReservedToSold", holdConfirm},
		{"HoldExpiresAndReturnsStock_ConfirmThenFailsHoldExpired", holdExpires},
		{"ConfirmAfterDeadlineExpiresEvenBeforeTheSweeper", confirmAfterDeadline},
		{"ConfirmRacingTheSweeper_ExactlyOneWins", confirmRacesSweeper},
		{"CancelReturnsStock_TwiceIsANoOp", cancelReturnsStock},
		{"ConfirmOfACancelledOrderFails", confirmCancelled},
		{"IdempotentReplayReturnsTheOriginalAndTakesNoStock", idempotentReplay},
		{"HundredConcurrentDuplicates_OneOrder", concurrentDuplicates},
		{"SameKeyDifferentRequest_Refused", keyReused},
		{"IdempotencyKeysAreScopedPerCustomer", keysPerCustomer},
		{"PerCustomerLimitHoldsUnderConcurrency", limitUnderConcurrency},
		{"CancelledOrdersFreeTheirLimit", limitFreedByCancel},
		{"AdjustStockNeverTakesAvailableBelowZero", adjustStock},
		{"ListOrdersFiltersAndPagesNewestFirst", listOrders},
		{"CancelledContextChangesNothing", cancelledContext},
		{"BatchAllocatesInArrivalOrder", batchFIFO},
		{"BatchHonoursKeysAndLimits", batchKeysAndLimits},
		{"ThousandBuyersThroughTheCoalescer_ExactlyAHundredWin", coalescedBuyers},
		{"BatchOfManyItemsAllocatesEachInOrder", batchManyItems},
		{"SpreadBuyersThroughCoalescerLanes", coalescedSpread},
	}
	for _, s := range scenarios {
		t.Run(s.name, func(t *testing.T) {
			h := &harness{t: t, Stores: newStores(t), now: time.Now().UTC().Truncate(time.Microsecond)}
			s.run(t, h)
			h.assertAudited()
		})
	}
}

type harness struct {
	Stores
	t   *testing.T
	now time.Time
	seq atomic.Int64
}

func (h *harness) item(stock, limit int32) string {
	h.t.Helper()
	id := uuid.Must(uuid.NewV7()).String()
	_, err := h.Items.CreateItem(context.Background(), inventory.Item{
		ID: id, SKU: fmt.Sprintf("SKU-%d-%s", h.seq.Add(1), id[len(id)-6:]), Name: "contract item",
		InitialStock: stock, Available: stock, MaxPerCustomer: limit, Version: 1, CreateTime: h.now,
	})
	if err != nil {
		h.t.Fatalf("CreateItem: %v", err)
	}
	return id
}

func (h *harness) get(id string) inventory.Item {
	h.t.Helper()
	it, err := h.Items.GetItem(context.Background(), id)
	if err != nil {
		h.t.Fatalf("GetItem: %v", err)
	}
	return it
}

func (h *harness) levels(id string, available, reserved, sold int32) {
	h.t.Helper()
	it := h.get(id)
	if it.Available != available || it.Reserved != reserved || it.Sold != sold {
		h.t.Fatalf("item levels = %d/%d/%d (available/reserved/sold), want %d/%d/%d",
			it.Available, it.Reserved, it.Sold, available, reserved, sold)
	}
}

// order builds an order as the service would.
func (h *harness) order(customer, key string, hold time.Duration, lines ...orders.Line) orders.Order {
	req := orders.PlaceRequest{Lines: lines, IdempotencyKey: key, HoldSeconds: int32(hold / time.Second)}
	o := orders.Order{
		ID: uuid.Must(uuid.NewV7()).String(), CustomerID: customer, Status: orders.StatusConfirmed,
		Lines: lines, IdempotencyKey: key, RequestHash: req.Hash(), CreateTime: h.now, UpdateTime: h.now,
	}
	if hold > 0 {
		o.Status, o.ExpireTime = orders.StatusPending, h.now.Add(hold)
	}
	return o
}

func (h *harness) place(o orders.Order) (orders.Order, bool, error) {
	return h.Orders.PlaceOrder(context.Background(), o)
}

func (h *harness) mustPlace(o orders.Order) orders.Order {
	h.t.Helper()
	got, _, err := h.place(o)
	if err != nil {
		h.t.Fatalf("PlaceOrder: %v", err)
	}
	return got
}

func (h *harness) assertAudited() {
	h.t.Helper()
	report, err := h.Auditor.Audit(context.Background())
	if err != nil {
		h.t.Fatalf("Audit: %v", err)
	}
	if !report.OK() {
		h.t.Fatalf("audit found problems: %v", report.Discrepancies)
	}
}

func line(id string, q int32) orders.Line { return orders.Line{ItemID: id, Quantity: q} }

// parallel runs f(i) for i in [0, n) at once and returns the errors.
func parallel(n int, f func(i int) error) []error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			errs[i] = f(i)
		})
	}
	close(start)
	wg.Wait()
	return errs
}

// tally counts errors by kind: "ok", "insufficient", "limit", or the error text.
func tally(errs []error) map[string]int {
	out := map[string]int{}
	for _, err := range errs {
		var ise *inventory.InsufficientStockError
		var lee *orders.LimitExceededError
		switch {
		case err == nil:
			out["ok"]++
		case errors.As(err, &ise):
			out["insufficient"]++
		case errors.As(err, &lee):
			out["limit"]++
		default:
			out[err.Error()]++
		}
	}
	return out
}

func thousandBuyers(t *testing.T, h *harness) {
	id := h.item(100, 0)
	errs := parallel(1000, func(i int) error {
		_, _, err := h.place(h.order(fmt.Sprintf("c%d", i), "", 0, line(id, 1)))
		return err
	})
	if got := tally(errs); got["ok"] != 100 || got["insufficient"] != 900 || len(got) != 2 {
		t.Fatalf("outcomes = %v, want 100 ok and 900 insufficient", got)
	}
	h.levels(id, 0, 0, 100)
}

func linesSummed(t *testing.T, h *harness) {
	id := h.item(3, 0)
	_, _, err := h.place(h.order("alice", "", 0, line(id, 2), line(id, 2)))
	var ise *inventory.InsufficientStockError
	if !errors.As(err, &ise) || ise.Requested != 4 || ise.Available != 3 {
		t.Fatalf("error = %v, want insufficient stock for 4 of 3", err)
	}
	h.levels(id, 3, 0, 0)
	got := h.mustPlace(h.order("alice", "", 0, line(id, 1), line(id, 2)))
	if len(got.Lines) != 2 {
		t.Fatalf("order lines = %v, want the lines as placed", got.Lines)
	}
	h.levels(id, 0, 0, 3)
}

func allOrNothing(t *testing.T, h *harness) {
	plenty, scarce := h.item(10, 0), h.item(1, 0)
	_, _, err := h.place(h.order("alice", "", 0, line(plenty, 5), line(scarce, 2)))
	var ise *inventory.InsufficientStockError
	if !errors.As(err, &ise) || ise.ItemID != scarce {
		t.Fatalf("error = %v, want insufficient stock on the scarce item", err)
	}
	h.levels(plenty, 10, 0, 0)
	h.levels(scarce, 1, 0, 0)
}

func oppositeOrders(t *testing.T, h *harness) {
	a, b := h.item(1000, 0), h.item(1000, 0)
	errs := parallel(200, func(i int) error {
		lines := []orders.Line{line(a, 1), line(b, 1)}
		if i%2 == 1 {
			lines = []orders.Line{line(b, 1), line(a, 1)}
		}
		_, _, err := h.place(h.order(fmt.Sprintf("c%d", i), "", 0, lines...))
		return err
	})
	if got := tally(errs); got["ok"] != 200 {
		t.Fatalf("outcomes = %v, want 200 ok", got)
	}
	h.levels(a, 800, 0, 200)
	h.levels(b, 800, 0, 200)
}

func unknownItem(t *testing.T, h *harness) {
	known := h.item(5, 0)
	missing := uuid.Must(uuid.NewV7()).String()
	_, _, err := h.place(h.order("alice", "", 0, line(known, 1), line(missing, 1)))
	if !errors.Is(err, inventory.ErrItemNotFound) {
		t.Fatalf("error = %v, want ErrItemNotFound", err)
	}
	h.levels(known, 5, 0, 0)
}

func holdConfirm(t *testing.T, h *harness) {
	id := h.item(5, 0)
	o := h.mustPlace(h.order("alice", "", time.Minute, line(id, 2)))
	if o.Status != orders.StatusPending || o.ExpireTime.IsZero() {
		t.Fatalf("hold = %+v", o)
	}
	h.levels(id, 3, 2, 0)
	got, err := h.Orders.ConfirmOrder(context.Background(), o.ID, h.now.Add(time.Second))
	if err != nil || got.Status != orders.StatusConfirmed {
		t.Fatalf("confirm = %+v, %v", got, err)
	}
	h.levels(id, 3, 0, 2)
	again, err := h.Orders.ConfirmOrder(context.Background(), o.ID, h.now.Add(2*time.Second))
	if err != nil || again.Status != orders.StatusConfirmed {
		t.Fatalf("second confirm = %+v, %v; want the confirmed order unchanged", again, err)
	}
	h.levels(id, 3, 0, 2)
}

func holdExpires(t *testing.T, h *harness) {
	id := h.item(5, 0)
	o := h.mustPlace(h.order("alice", "", time.Minute, line(id, 2)))
	if n, err := h.Orders.ExpireHolds(context.Background(), h.now.Add(30*time.Second), 100); err != nil || n != 0 {
		t.Fatalf("early sweep expired %d, %v; want 0", n, err)
	}
	n, err := h.Orders.ExpireHolds(context.Background(), h.now.Add(time.Minute), 100)
	if err != nil || n != 1 {
		t.Fatalf("sweep expired %d, %v; want 1", n, err)
	}
	h.levels(id, 5, 0, 0)
	got, err := h.Orders.GetOrder(context.Background(), o.ID)
	if err != nil || got.Status != orders.StatusExpired {
		t.Fatalf("order after sweep = %+v, %v", got, err)
	}
	if _, err := h.Orders.ConfirmOrder(context.Background(), o.ID, h.now.Add(2*time.Minute)); !errors.Is(err, orders.ErrHoldExpired) {
		t.Fatalf("confirm after expiry: %v, want ErrHoldExpired", err)
	}
	if c, err := h.Orders.CancelOrder(context.Background(), o.ID, h.now.Add(2*time.Minute)); err != nil || c.Status != orders.StatusExpired {
		t.Fatalf("cancel of expired order = %+v, %v; want it unchanged", c, err)
	}
	h.levels(id, 5, 0, 0)
}

func confirmAfterDeadline(t *testing.T, h *harness) {
	id := h.item(5, 0)
	o := h.mustPlace(h.order("alice", "", time.Minute, line(id, 2)))
	if _, err := h.Orders.ConfirmOrder(context.Background(), o.ID, h.now.Add(time.Minute)); !errors.Is(err, orders.ErrHoldExpired) {
		t.Fatalf("confirm at the deadline: %v, want ErrHoldExpired", err)
	}
	h.levels(id, 5, 0, 0)
	if n, err := h.Orders.ExpireHolds(context.Background(), h.now.Add(time.Hour), 100); err != nil || n != 0 {
		t.Fatalf("sweep after confirm expired it: %d, %v; want 0", n, err)
	}
}

func confirmRacesSweeper(t *testing.T, h *harness) {
	const holds = 50
	id := h.item(holds, 0)
	ids := make([]string, holds)
	for i := range ids {
		ids[i] = h.mustPlace(h.order(fmt.Sprintf("c%d", i), "", time.Minute, line(id, 1))).ID
	}
	// Confirm at a time the hold still runs, while a sweeper that believes
	// the holds are over sweeps: every order must end in exactly one state.
	var swept atomic.Int64
	confirmErrs := make([]error, holds)
	var wg sync.WaitGroup
	wg.Go(func() {
		for swept.Load() < holds {
			n, err := h.Orders.ExpireHolds(context.Background(), h.now.Add(2*time.Minute), 7)
			if err != nil {
				t.Errorf("ExpireHolds: %v", err)
				return
			}
			if n == 0 {
				return
			}
			swept.Add(int64(n))
		}
	})
	for i := range ids {
		wg.Go(func() {
			_, confirmErrs[i] = h.Orders.ConfirmOrder(context.Background(), ids[i], h.now.Add(time.Second))
		})
	}
	wg.Wait()
	confirmed := 0
	for i, err := range confirmErrs {
		o, gerr := h.Orders.GetOrder(context.Background(), ids[i])
		if gerr != nil {
			t.Fatal(gerr)
		}
		switch {
		case err == nil && o.Status == orders.StatusConfirmed:
			confirmed++
		case errors.Is(err, orders.ErrHoldExpired) && o.Status == orders.StatusExpired:
		default:
			t.Fatalf("order %d: confirm error %v, status %s: the confirm and the sweep disagree", i, err, o.Status)
		}
	}
	if int64(confirmed)+swept.Load() != holds {
		t.Fatalf("%d confirmed + %d expired != %d holds", confirmed, swept.Load(), holds)
	}
	h.levels(id, int32(swept.Load()), 0, int32(confirmed))
}

func cancelReturnsStock(t *testing.T, h *harness) {
	id := h.item(10, 0)
	held := h.mustPlace(h.order("alice", "", time.Minute, line(id, 3)))
	bought := h.mustPlace(h.order("alice", "", 0, line(id, 4)))
	h.levels(id, 3, 3, 4)
	for _, o := range []orders.Order{held, bought} {
		c, err := h.Orders.CancelOrder(context.Background(), o.ID, h.now.Add(time.Second))
		if err != nil || c.Status != orders.StatusCancelled {
			t.Fatalf("cancel = %+v, %v", c, err)
		}
		again, err := h.Orders.CancelOrder(context.Background(), o.ID, h.now.Add(2*time.Second))
		if err != nil || again.Status != orders.StatusCancelled || !again.UpdateTime.Equal(c.UpdateTime) {
			t.Fatalf("second cancel = %+v, %v; want the same cancelled order", again, err)
		}
	}
	h.levels(id, 10, 0, 0)
	if _, err := h.Orders.CancelOrder(context.Background(), uuid.Must(uuid.NewV7()).String(), h.now); !errors.Is(err, orders.ErrOrderNotFound) {
		t.Fatalf("cancel of unknown order: %v", err)
	}
}

func confirmCancelled(t *testing.T, h *harness) {
	id := h.item(10, 0)
	o := h.mustPlace(h.order("alice", "", time.Minute, line(id, 3)))
	if _, err := h.Orders.CancelOrder(context.Background(), o.ID, h.now); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Orders.ConfirmOrder(context.Background(), o.ID, h.now); !errors.Is(err, orders.ErrNotPending) {
		t.Fatalf("confirm of cancelled order: %v, want ErrNotPending", err)
	}
	h.levels(id, 10, 0, 0)
}

func idempotentReplay(t *testing.T, h *harness) {
	id := h.item(10, 0)
	first, replayed, err := h.place(h.order("alice", "key-1", 0, line(id, 2)))
	if err != nil || replayed {
		t.Fatalf("first = %v, replayed %v", err, replayed)
	}
	second, replayed, err := h.place(h.order("alice", "key-1", 0, line(id, 1), line(id, 1)))
	if err != nil || !replayed || second.ID != first.ID {
		t.Fatalf("replay = %+v, replayed %v, %v; want the first order", second, replayed, err)
	}
	h.levels(id, 8, 0, 2)
}

func concurrentDuplicates(t *testing.T, h *harness) {
	id := h.item(1000, 0)
	ids := make([]string, 100)
	errs := parallel(100, func(i int) error {
		o, _, err := h.place(h.order("alice", "dup-key", 0, line(id, 3)))
		ids[i] = o.ID
		return err
	})
	if got := tally(errs); got["ok"] != 100 {
		t.Fatalf("outcomes = %v, want 100 ok (one order, 99 replays)", got)
	}
	for _, got := range ids {
		if got != ids[0] {
			t.Fatalf("duplicates returned different orders: %s and %s", ids[0], got)
		}
	}
	h.levels(id, 997, 0, 3)
}

func keyReused(t *testing.T, h *harness) {
	id := h.item(10, 0)
	h.mustPlace(h.order("alice", "key-x", 0, line(id, 1)))
	for _, o := range []orders.Order{
		h.order("alice", "key-x", 0, line(id, 2)),
		h.order("alice", "key-x", time.Minute, line(id, 1)),
	} {
		if _, _, err := h.place(o); !errors.Is(err, orders.ErrIdempotencyKeyReused) {
			t.Fatalf("different request with a used key: %v, want ErrIdempotencyKeyReused", err)
		}
	}
	h.levels(id, 9, 0, 1)
}

func keysPerCustomer(t *testing.T, h *harness) {
	id := h.item(10, 0)
	a := h.mustPlace(h.order("alice", "shared", 0, line(id, 1)))
	b, replayed, err := h.place(h.order("bob", "shared", 0, line(id, 1)))
	if err != nil || replayed || b.ID == a.ID {
		t.Fatalf("bob with alice's key = %+v, replayed %v, %v; want his own order", b, replayed, err)
	}
	h.levels(id, 8, 0, 2)
}

func limitUnderConcurrency(t *testing.T, h *harness) {
	id := h.item(100, 3)
	errs := parallel(50, func(int) error {
		_, _, err := h.place(h.order("alice", "", 0, line(id, 1)))
		return err
	})
	if got := tally(errs); got["ok"] != 3 || got["limit"] != 47 {
		t.Fatalf("outcomes = %v, want 3 ok and 47 limit", got)
	}
	if _, _, err := h.place(h.order("bob", "", time.Minute, line(id, 3))); err != nil {
		t.Fatalf("another customer within the limit: %v", err)
	}
	_, _, err := h.place(h.order("bob", "", 0, line(id, 1)))
	var lee *orders.LimitExceededError
	if !errors.As(err, &lee) || lee.Limit != 3 || lee.Held != 3 || lee.Requested != 1 {
		t.Fatalf("holds count toward the limit: %v", err)
	}
	h.levels(id, 94, 3, 3)
}

func limitFreedByCancel(t *testing.T, h *harness) {
	id := h.item(100, 2)
	o := h.mustPlace(h.order("alice", "", 0, line(id, 2)))
	if _, _, err := h.place(h.order("alice", "", 0, line(id, 1))); err == nil {
		t.Fatal("third unit beyond a limit of 2 was sold")
	}
	if _, err := h.Orders.CancelOrder(context.Background(), o.ID, h.now); err != nil {
		t.Fatal(err)
	}
	h.mustPlace(h.order("alice", "", 0, line(id, 2)))
	h.levels(id, 98, 0, 2)
}

func adjustStock(t *testing.T, h *harness) {
	id := h.item(5, 0)
	it, err := h.Items.AdjustStock(context.Background(), id, 10)
	if err != nil || it.Available != 15 || it.Adjusted != 10 || it.Version != 2 {
		t.Fatalf("restock = %+v, %v", it, err)
	}
	h.mustPlace(h.order("alice", "", 0, line(id, 12)))
	_, err = h.Items.AdjustStock(context.Background(), id, -4)
	var ise *inventory.InsufficientStockError
	if !errors.As(err, &ise) || ise.Available != 3 {
		t.Fatalf("removing 4 of 3: %v, want InsufficientStockError", err)
	}
	it, err = h.Items.AdjustStock(context.Background(), id, -3)
	if err != nil || it.Available != 0 || it.Adjusted != 7 {
		t.Fatalf("removing the last 3 = %+v, %v", it, err)
	}
	if _, err := h.Items.AdjustStock(context.Background(), uuid.Must(uuid.NewV7()).String(), 1); !errors.Is(err, inventory.ErrItemNotFound) {
		t.Fatalf("adjust of unknown item: %v", err)
	}
	h.levels(id, 0, 0, 12)
}

func listOrders(t *testing.T, h *harness) {
	a, b := h.item(100, 0), h.item(100, 0)
	var aliceIDs []string
	for i := range 5 {
		item := a
		if i%2 == 1 {
			item = b
		}
		aliceIDs = append(aliceIDs, h.mustPlace(h.order("alice", "", 0, line(item, 1))).ID)
	}
	h.mustPlace(h.order("bob", "", 0, line(a, 1)))
	page, err := h.Orders.ListOrders(context.Background(), orders.ListFilter{CustomerID: "alice", Limit: 3})
	if err != nil || len(page) != 3 || page[0].ID != aliceIDs[4] || page[2].ID != aliceIDs[2] {
		t.Fatalf("first page = %v, %v", ids(page), err)
	}
	rest, err := h.Orders.ListOrders(context.Background(), orders.ListFilter{CustomerID: "alice", BeforeID: page[2].ID, Limit: 3})
	if err != nil || len(rest) != 2 || rest[0].ID != aliceIDs[1] {
		t.Fatalf("second page = %v, %v", ids(rest), err)
	}
	onB, err := h.Orders.ListOrders(context.Background(), orders.ListFilter{CustomerID: "alice", ItemID: b, Limit: 10})
	if err != nil || len(onB) != 2 {
		t.Fatalf("alice's orders of item b = %v, %v", ids(onB), err)
	}
	all, err := h.Orders.ListOrders(context.Background(), orders.ListFilter{ItemID: a, Limit: 10})
	if err != nil || len(all) != 4 {
		t.Fatalf("everyone's orders of item a = %v, %v", ids(all), err)
	}
}

func ids(list []orders.Order) []string {
	out := make([]string, len(list))
	for i, o := range list {
		out[i] = o.ID
	}
	return out
}

func cancelledContext(t *testing.T, h *harness) {
	id := h.item(5, 0)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := h.Orders.PlaceOrder(ctx, h.order("alice", "", 0, line(id, 1))); !errors.Is(err, context.Canceled) {
		t.Fatalf("place with a cancelled context: %v, want context.Canceled", err)
	}
	h.levels(id, 5, 0, 0)
	// The store still works afterwards: no connection or lock was left behind.
	h.mustPlace(h.order("alice", "", 0, line(id, 1)))
	h.levels(id, 4, 0, 1)
}

func batchFIFO(t *testing.T, h *harness) {
	id := h.item(3, 0)
	batch := make([]orders.Order, 5)
	for i := range batch {
		batch[i] = h.order(fmt.Sprintf("c%d", i), "", 0, line(id, 1))
	}
	results, err := h.Orders.PlaceBatch(context.Background(), batch, nil)
	if err != nil || len(results) != 5 {
		t.Fatalf("PlaceBatch = %v, %v", results, err)
	}
	for i, r := range results {
		var ise *inventory.InsufficientStockError
		switch {
		case i < 3 && (r.Err != nil || r.Order.ID != batch[i].ID):
			t.Fatalf("order %d (within stock) = %+v", i, r)
		case i >= 3 && (!errors.As(r.Err, &ise) || ise.Available != 0):
			t.Fatalf("order %d (past stock) = %+v, want insufficient stock with 0 available", i, r)
		}
	}
	h.levels(id, 0, 0, 3)
}

func batchKeysAndLimits(t *testing.T, h *harness) {
	id := h.item(100, 2)
	batch := []orders.Order{
		h.order("alice", "k1", 0, line(id, 1)),
		h.order("alice", "k1", 0, line(id, 1)), // the same request again: a replay
		h.order("alice", "k2", 0, line(id, 2)), // past alice's limit of 2
		h.order("bob", "", time.Minute, line(id, 2)),
		h.order("alice", "k1", 0, line(id, 3)), // the key with another request
	}
	results, err := h.Orders.PlaceBatch(context.Background(), batch, nil)
	if err != nil {
		t.Fatal(err)
	}
	var lee *orders.LimitExceededError
	switch {
	case results[0].Err != nil || results[0].Replayed:
		t.Fatalf("first = %+v", results[0])
	case results[1].Err != nil || !results[1].Replayed || results[1].Order.ID != results[0].Order.ID:
		t.Fatalf("duplicate in the batch = %+v, want a replay of %s", results[1], results[0].Order.ID)
	case !errors.As(results[2].Err, &lee) || lee.Held != 1:
		t.Fatalf("past the limit = %+v", results[2])
	case results[3].Err != nil || results[3].Order.Status != orders.StatusPending:
		t.Fatalf("bob's hold = %+v", results[3])
	case !errors.Is(results[4].Err, orders.ErrIdempotencyKeyReused):
		t.Fatalf("reused key = %+v", results[4])
	}
	h.levels(id, 97, 2, 1)
	again, err := h.Orders.PlaceBatch(context.Background(), []orders.Order{h.order("alice", "k1", 0, line(id, 1))}, nil)
	if err != nil || !again[0].Replayed || again[0].Order.ID != results[0].Order.ID {
		t.Fatalf("a later batch with a stored key = %+v, %v", again, err)
	}
	h.levels(id, 97, 2, 1)
}

func coalescedBuyers(t *testing.T, h *harness) {
	id := h.item(100, 0)
	c := orders.NewCoalescer(h.Orders, orders.CoalescerConfig{MaxBatch: 64, QueueSize: 2000, IdleAfter: 20 * time.Millisecond})
	defer func() { _ = c.Stop(context.Background()) }()
	errs := parallel(1000, func(i int) error {
		_, _, err := c.Place(context.Background(), id, h.order(fmt.Sprintf("c%d", i), "", 0, line(id, 1)))
		return err
	})
	if got := tally(errs); got["ok"] != 100 || got["insufficient"] != 900 || len(got) != 2 {
		t.Fatalf("outcomes = %v, want 100 ok and 900 insufficient", got)
	}
	h.levels(id, 0, 0, 100)
}

func batchManyItems(t *testing.T, h *harness) {
	a, b := h.item(1, 0), h.item(5, 0)
	missing := uuid.Must(uuid.NewV7()).String()
	batch := []orders.Order{
		h.order("c1", "", 0, line(a, 1)),
		h.order("c2", "", time.Minute, line(b, 2)),
		h.order("c3", "", 0, line(missing, 1)),
		h.order("c4", "", 0, line(a, 1)),
		h.order("c5", "", 0, line(b, 3)),
	}
	results, err := h.Orders.PlaceBatch(context.Background(), batch, nil)
	if err != nil {
		t.Fatal(err)
	}
	var ise *inventory.InsufficientStockError
	switch {
	case results[0].Err != nil, results[1].Err != nil, results[4].Err != nil:
		t.Fatalf("orders within stock failed: %+v", results)
	case !errors.Is(results[2].Err, inventory.ErrItemNotFound):
		t.Fatalf("order of a missing item = %+v; the rest of the batch must not fail with it", results[2])
	case !errors.As(results[3].Err, &ise) || ise.ItemID != a:
		t.Fatalf("second order of a = %+v, want insufficient stock", results[3])
	}
	h.levels(a, 0, 0, 1)
	h.levels(b, 0, 2, 3)
}

func coalescedSpread(t *testing.T, h *harness) {
	ids := make([]string, 20)
	for i := range ids {
		ids[i] = h.item(10, 0)
	}
	c := orders.NewCoalescer(h.Orders, orders.CoalescerConfig{Lanes: 4, MaxBatch: 64, QueueSize: 2000, IdleAfter: 20 * time.Millisecond})
	defer func() { _ = c.Stop(context.Background()) }()
	errs := parallel(400, func(i int) error {
		id := ids[i%len(ids)]
		_, _, err := c.Place(context.Background(), id, h.order(fmt.Sprintf("c%d", i), "", 0, line(id, 1)))
		return err
	})
	if got := tally(errs); got["ok"] != 200 || got["insufficient"] != 200 || len(got) != 2 {
		t.Fatalf("outcomes = %v, want 200 ok (10 of each of 20 items) and 200 insufficient", got)
	}
	for _, id := range ids {
		h.levels(id, 0, 0, 10)
	}
}
