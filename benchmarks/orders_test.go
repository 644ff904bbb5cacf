package benchmarks

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	stockguardv1 "github.com/stockguard/stockguard/gen/stockguard/v1"
	"github.com/stockguard/stockguard/modules/inventory"
	invmem "github.com/stockguard/stockguard/modules/inventory/memory"
	"github.com/stockguard/stockguard/modules/orders"
	ordmem "github.com/stockguard/stockguard/modules/orders/memory"
)

func newMemoryOrders(b *testing.B, stock int32) (*orders.Service, *ordmem.OrderStore, string) {
	items := invmem.NewItemStore()
	store := ordmem.NewOrderStore(items)
	it, err := inventory.NewService(items).CreateItem(context.Background(), inventory.NewItem{SKU: "B", Name: "b", InitialStock: stock})
	if err != nil {
		b.Fatal(err)
	}
	return orders.NewService(store), store, it.ID
}

// BenchmarkPlaceOrder is the domain's cost of one purchase (validation,
// fingerprint, in-memory store), without and with the coalescer, from
// parallel callers.
func BenchmarkPlaceOrder(b *testing.B) {
	for _, coalesce := range []bool{false, true} {
		b.Run(fmt.Sprintf("coalesce=%v", coalesce), func(b *testing.B) {
			svc, store, item := newMemoryOrders(b, inventory.MaxStock)
			if coalesce {
				c := orders.NewCoalescer(store, orders.CoalescerConfig{Lanes: 8, MaxBatch: 256, QueueSize: 4096, IdleAfter: 10 * time.Millisecond})
				svc.WithCoalescer(c)
				b.Cleanup(func() { _ = c.Stop(context.Background()) })
			}
			var n atomic.Int64
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					caller := orders.Caller{CustomerID: fmt.Sprint("c", n.Add(1)%1000)}
					if _, err := svc.PlaceOrder(context.Background(), caller, orders.PlaceRequest{Lines: []orders.Line{{ItemID: item, Quantity: 1}}}); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

// BenchmarkCoalescerBatch is the coalescer's own overhead: queueing, waking
// the lane worker and answering, over a store that does no work.
func BenchmarkCoalescerBatch(b *testing.B) {
	c := orders.NewCoalescer(nopStore{}, orders.CoalescerConfig{Lanes: 1, MaxBatch: 256, QueueSize: 1 << 16, IdleAfter: 10 * time.Millisecond})
	b.Cleanup(func() { _ = c.Stop(context.Background()) })
	item := uuid.NewString()
	o := orders.Order{ID: uuid.NewString(), Lines: []orders.Line{{ItemID: item, Quantity: 1}}}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, _, err := c.Place(context.Background(), item, o); err != nil {
				b.Fatal(err)
			}
		}
	})
}

type nopStore struct{ orders.Store }

func (nopStore) PlaceBatch(_ context.Context, batch []orders.Order, _ func(int) bool) ([]orders.BatchResult, error) {
	out := make([]orders.BatchResult, len(batch))
	for i, o := range batch {
		out[i] = orders.BatchResult{Order: o}
	}
	return out, nil
}

// BenchmarkCodec compares decoding a PlaceOrder request as binary protobuf
// (gRPC, Connect binary) and as protojson (Connect JSON, REST).
func BenchmarkCodec(b *testing.B) {
	req := &stockguardv1.PlaceOrderRequest{Lines: []*stockguardv1.OrderLine{{ItemId: uuid.NewString(), Quantity: 2}}, IdempotencyKey: "checkout-123"}
	bin, _ := proto.Marshal(req)
	js, _ := protojson.Marshal(req)
	b.Run("proto_unmarshal", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			var m stockguardv1.PlaceOrderRequest
			if err := proto.Unmarshal(bin, &m); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("protojson_unmarshal", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			var m stockguardv1.PlaceOrderRequest
			if err := protojson.Unmarshal(js, &m); err != nil {
				b.Fatal(err)
			}
		}
	})
}
