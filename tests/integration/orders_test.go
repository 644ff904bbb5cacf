package integration

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"

	stockguardv1 "github.com/stockguard/stockguard/gen/stockguard/v1"
	"github.com/stockguard/stockguard/platform/auth"
	"github.com/stockguard/stockguard/platform/config"
)

// 10,000 purchases of an item with 100 units, at once, spread over gRPC,
// Connect and REST: exactly 100 succeed, every other answer is
// INSUFFICIENT_STOCK, and the books balance.
func TestOrders_TenThousandConcurrentBuyersOfAHundredUnits(t *testing.T) {
	if testing.Short() {
		t.Skip("load-shaped test")
	}
	const stock, buyers = 100, 10_000
	srv := startServer(t, postgresStore)
	dialers := []protocol{protocols[0], protocols[2], protocols[4]} // grpc, connect, rest
	admin := dialers[0].dial(srv.base, srv.token(t, "ops", auth.RoleAdmin))
	item := createItem(t, admin, "FLASH", stock, 0)
	clients := make([]apiClient, len(dialers))
	for i, p := range dialers {
		clients[i] = p.dial(srv.base, srv.token(t, "crowd", auth.RoleCustomer))
	}

	var mu sync.Mutex
	counts := map[string]int{}
	var retried atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range buyers {
		wg.Go(func() {
			<-start
			// Each buyer behaves as the API asks a client to: a call whose
			// answer was lost in transport, or that was told the store is
			// busy, is sent again with the same key, which cannot buy twice.
			// Under the race detector, with the other test packages sharing
			// two cores, a few of 10,000 calls (up to a few hundred) lose
			// their connection or stream (HTTP/1.1 connections closed under
			// the client, HTTP/2 streams refused in the race where the client
			// reuses a stream slot before the server has counted it free),
			// and a batch can outlive its lock or statement timeout.
			req := buy(item.GetId(), 1)
			req.IdempotencyKey = fmt.Sprintf("crowd-%d", i)
			var o outcome
			for attempt := 1; ; attempt++ {
				_, o = clients[i%len(clients)].PlaceOrder(context.Background(), req)
				if !worthRetrying(o) || attempt == 5 {
					break
				}
				retried.Add(1)
				time.Sleep(100 * time.Millisecond)
			}
			mu.Lock()
			counts[o.String()]++
			mu.Unlock()
		})
	}
	close(start)
	wg.Wait()
	t.Logf("%d calls sent again with their key", retried.Load())

	want := map[string]int{"ok": stock, "failed_precondition/INSUFFICIENT_STOCK": buyers - stock}
	if fmt.Sprint(counts) != fmt.Sprint(want) {
		t.Fatalf("outcomes = %v, want %v", counts, want)
	}
	got, o := clients[0].GetItem(context.Background(), item.GetId())
	if o.Code != 0 || got.GetAvailable() != 0 || got.GetSold() != stock || got.GetReserved() != 0 {
		t.Fatalf("item = %v, %s", got, o)
	}
	assertVerified(t, srv)
}

// A mixed workload of holds, confirms, cancels, expiries and adjustments,
// from many customers over every protocol, leaves every item conserved and
// matching its ledger.
func TestOrders_MixedWorkloadConservesStock(t *testing.T) {
	for _, s := range stores {
		t.Run(string(s), func(t *testing.T) {
			srv := startServer(t, s, func(c *config.Config) { c.SweepInterval = 20 * time.Millisecond })
			admin := protocols[0].dial(srv.base, srv.token(t, "ops", auth.RoleAdmin))
			var itemIDs []string
			for i := range 4 {
				itemIDs = append(itemIDs, createItem(t, admin, fmt.Sprintf("MIX-%d", i), 60, 5).GetId())
			}
			var wg sync.WaitGroup
			for w := range 24 {
				wg.Go(func() {
					p := protocols[w%len(protocols)]
					c := p.dial(srv.base, srv.token(t, fmt.Sprintf("cust-%d", w%8), auth.RoleCustomer))
					rng := rand.New(rand.NewPCG(uint64(w), 7))
					mixedSession(t, c, admin, itemIDs, rng)
				})
			}
			wg.Wait()
			// Let every remaining hold (one second long) expire through the sweeper.
			deadline := time.Now().Add(10 * time.Second)
			for {
				reserved := int32(0)
				for _, id := range itemIDs {
					it, o := admin.GetItem(context.Background(), id)
					if o.Code != 0 {
						t.Fatalf("GetItem: %s", o)
					}
					if it.GetAvailable()+it.GetReserved()+it.GetSold() < 0 || it.GetAvailable() < 0 {
						t.Fatalf("negative stock: %v", it)
					}
					reserved += it.GetReserved()
				}
				if reserved == 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%d units still reserved after every hold ran out", reserved)
				}
				time.Sleep(50 * time.Millisecond)
			}
			if s == postgresStore {
				assertVerified(t, srv)
			}
		})
	}
}

// mixedSession places holds and purchases and then confirms, cancels or
// abandons them, with an occasional restock.
func mixedSession(t *testing.T, c, admin apiClient, itemIDs []string, rng *rand.Rand) {
	ctx := context.Background()
	for range 15 {
		req := &stockguardv1.PlaceOrderRequest{}
		for range 1 + rng.IntN(2) {
			req.Lines = append(req.Lines, &stockguardv1.OrderLine{ItemId: itemIDs[rng.IntN(len(itemIDs))], Quantity: int32(1 + rng.IntN(2))})
		}
		if rng.IntN(2) == 0 {
			req.HoldSeconds = 1
		}
		order, o := c.PlaceOrder(ctx, req)
		switch {
		case o.Code == 0:
		case o.Reason == "INSUFFICIENT_STOCK" || o.Reason == "LIMIT_EXCEEDED":
			continue
		default:
			t.Errorf("PlaceOrder = %s", o)
			return
		}
		switch rng.IntN(4) {
		case 0:
			if _, o := c.CancelOrder(ctx, order.GetId()); o.Code != 0 {
				t.Errorf("CancelOrder = %s", o)
			}
		case 1:
			if _, o := c.ConfirmOrder(ctx, order.GetId()); o.Code != 0 && o.Reason != "HOLD_EXPIRED" {
				t.Errorf("ConfirmOrder = %s", o)
			}
		case 2:
			if rng.IntN(3) == 0 {
				id := itemIDs[rng.IntN(len(itemIDs))]
				if _, o := adjust(ctx, admin, id, int32(rng.IntN(5)-1)); o.Code != 0 && o.Code != connect.CodeInvalidArgument && o.Reason != "INSUFFICIENT_STOCK" {
					t.Errorf("AdjustStock = %s", o)
				}
			}
		}
	}
}

func adjust(ctx context.Context, c apiClient, id string, delta int32) (*stockguardv1.Item, outcome) {
	switch cl := c.(type) {
	case *rpcClient:
		return unaryItem(cl.inv.AdjustStock(ctx, connect.NewRequest(&stockguardv1.AdjustStockRequest{ItemId: id, Delta: delta})))
	case *restClient:
		var out stockguardv1.AdjustStockResponse
		o := cl.do(ctx, "POST", "/v1/items/"+id+":adjust", &stockguardv1.AdjustStockRequest{Delta: delta}, &out)
		return out.GetItem(), o
	}
	panic("unknown client")
}

func unaryItem(res *connect.Response[stockguardv1.AdjustStockResponse], err error) (*stockguardv1.Item, outcome) {
	msg, o := unary(res, err)
	return msg.GetItem(), o
}

// worthRetrying reports whether a client should send the call again with
// the same idempotency key: the store was busy (STORE_UNAVAILABLE), or the
// call failed before any answer of the server reached the client (a closed
// connection, a reset stream). The server's own errors always carry an
// ErrorInfo reason, and it answers canceled only to a caller that has gone.
func worthRetrying(o outcome) bool {
	switch o.Code {
	case connect.CodeUnavailable:
		return o.Reason == "STORE_UNAVAILABLE" || strings.HasPrefix(o.Reason, "CLIENT: ")
	case connect.CodeInternal, connect.CodeCanceled:
		return o.Reason == ""
	}
	return false
}
