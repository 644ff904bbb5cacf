package integration

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpcreflect"

	stockguardv1 "github.com/stockguard/stockguard/gen/stockguard/v1"
	"github.com/stockguard/stockguard/platform/auth"
)

func createItem(t *testing.T, c apiClient, sku string, stock, limit int32) *stockguardv1.Item {
	t.Helper()
	it, o := c.CreateItem(context.Background(), &stockguardv1.CreateItemRequest{Sku: sku, Name: "Item " + sku, InitialStock: stock, MaxPerCustomer: limit})
	if o.Code != 0 {
		t.Fatalf("CreateItem(%s) = %s", sku, o)
	}
	return it
}

func buy(itemID string, qty int32) *stockguardv1.PlaceOrderRequest {
	return &stockguardv1.PlaceOrderRequest{Lines: []*stockguardv1.OrderLine{{ItemId: itemID, Quantity: qty}}}
}

// The vertical slice: create, read and buy, over every protocol and both
// stores, with the same outcome everywhere.
func TestSlice_CreateGetBuyOverEveryProtocolAndStore(t *testing.T) {
	for _, s := range stores {
		t.Run(string(s), func(t *testing.T) {
			srv := startServer(t, s)
			for _, p := range protocols {
				t.Run(p.name, func(t *testing.T) {
					ctx := context.Background()
					admin := p.dial(srv.base, srv.token(t, "ops", auth.RoleAdmin))
					alice := p.dial(srv.base, srv.token(t, "alice", auth.RoleCustomer))
					anon := p.dial(srv.base, "")

					item := createItem(t, admin, "SKU-"+p.name, 3, 0)
					if item.GetAvailable() != 3 || item.GetVersion() != 1 || item.GetId() == "" || item.GetCreateTime() == nil {
						t.Fatalf("created item = %v", item)
					}
					got, o := anon.GetItem(ctx, item.GetId())
					if o.Code != 0 || got.GetSku() != "SKU-"+p.name {
						t.Fatalf("public GetItem = %v, %s", got, o)
					}
					for i := range 3 {
						order, o := alice.PlaceOrder(ctx, buy(item.GetId(), 1))
						if o.Code != 0 {
							t.Fatalf("purchase %d = %s", i, o)
						}
						if order.GetStatus() != stockguardv1.OrderStatus_ORDER_STATUS_CONFIRMED || order.GetCustomerId() != "alice" {
							t.Fatalf("purchase %d order = %v", i, order)
						}
					}
					_, o = alice.PlaceOrder(ctx, buy(item.GetId(), 1))
					if o.Code != connect.CodeFailedPrecondition || o.Reason != "INSUFFICIENT_STOCK" || o.Meta["available"] != "0" {
						t.Fatalf("purchase past stock = %s %v, want failed_precondition/INSUFFICIENT_STOCK with available 0", o, o.Meta)
					}
					got, _ = anon.GetItem(ctx, item.GetId())
					if got.GetAvailable() != 0 || got.GetSold() != 3 || got.GetReserved() != 0 || got.GetVersion() != 4 {
						t.Fatalf("item after sell-out = %v", got)
					}
				})
			}
		})
	}
}

func TestSlice_RolesAreEnforcedOnEveryProtocol(t *testing.T) {
	srv := startServer(t, memoryStore)
	expired, err := srv.authority.Issue("alice", auth.RoleCustomer, -time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	other := auth.NewAuthority([]byte("another-secret-another-secret-00000"))
	forged, _ := other.Issue("root", auth.RoleAdmin, time.Hour)
	cases := []struct {
		name   string
		token  string
		code   connect.Code
		reason string
	}{
		{"no token", "", connect.CodeUnauthenticated, "UNAUTHENTICATED"},
		{"customer token", srv.token(t, "alice", auth.RoleCustomer), connect.CodePermissionDenied, "PERMISSION_DENIED"},
		{"expired token", expired, connect.CodeUnauthenticated, "UNAUTHENTICATED"},
		{"wrongly signed token", forged, connect.CodeUnauthenticated, "UNAUTHENTICATED"},
		{"malformed token", "not-a-jwt", connect.CodeUnauthenticated, "UNAUTHENTICATED"},
	}
	for _, p := range protocols {
		for _, tc := range cases {
			t.Run(p.name+"/"+tc.name, func(t *testing.T) {
				c := p.dial(srv.base, tc.token)
				_, o := c.CreateItem(context.Background(), &stockguardv1.CreateItemRequest{Sku: "X", Name: "x", InitialStock: 1})
				if o.Code != tc.code || o.Reason != tc.reason {
					t.Fatalf("CreateItem = %s, want %s/%s", o, tc.code, tc.reason)
				}
			})
		}
		t.Run(p.name+"/place order needs a token", func(t *testing.T) {
			_, o := p.dial(srv.base, "").PlaceOrder(context.Background(), buy("0192f0c4-6f1e-7a4b-9c1d-2e3f4a5b6c7d", 1))
			if o.Code != connect.CodeUnauthenticated {
				t.Fatalf("PlaceOrder without token = %s", o)
			}
		})
	}
}

// Concurrent buyers over every protocol never take more than the stock.
func TestSlice_ConcurrentBuyersNeverOversell(t *testing.T) {
	const stock, buyers = 40, 200
	for _, s := range stores {
		t.Run(string(s), func(t *testing.T) {
			srv := startServer(t, s)
			admin := protocols[0].dial(srv.base, srv.token(t, "ops", auth.RoleAdmin))
			item := createItem(t, admin, "HOT", stock, 0)
			clients := make([]apiClient, len(protocols))
			for i, p := range protocols {
				clients[i] = p.dial(srv.base, srv.token(t, "buyer", auth.RoleCustomer))
			}
			var mu sync.Mutex
			counts := map[string]int{}
			var wg sync.WaitGroup
			for i := range buyers {
				wg.Go(func() {
					_, o := clients[i%len(clients)].PlaceOrder(context.Background(), buy(item.GetId(), 1))
					mu.Lock()
					counts[o.String()]++
					mu.Unlock()
				})
			}
			wg.Wait()
			want := map[string]int{"ok": stock, "failed_precondition/INSUFFICIENT_STOCK": buyers - stock}
			if fmt.Sprint(counts) != fmt.Sprint(want) {
				t.Fatalf("outcomes = %v, want %v", counts, want)
			}
			got, _ := clients[0].GetItem(context.Background(), item.GetId())
			if got.GetAvailable() != 0 || got.GetSold() != stock {
				t.Fatalf("item = %v", got)
			}
			if s == postgresStore {
				assertVerified(t, srv)
			}
		})
	}
}

func TestReflection_ListsTheThreeServices(t *testing.T) {
	srv := startServer(t, memoryStore)
	client := grpcreflect.NewClient(h2cClient(), srv.base, connect.WithGRPC())
	stream := client.NewStream(context.Background())
	defer stream.Close()
	names, err := stream.ListServices()
	if err != nil {
		t.Fatalf("ListServices: %v", err)
	}
	have := map[string]bool{}
	for _, n := range names {
		have[string(n)] = true
	}
	for _, want := range []string{"stockguard.v1.InventoryService", "stockguard.v1.OrderService", "stockguard.v1.StockService"} {
		if !have[want] {
			t.Errorf("reflection lacks %s; has %v", want, names)
		}
	}
}
