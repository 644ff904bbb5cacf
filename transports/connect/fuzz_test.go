package connect

import (
	"context"
	"errors"
	"testing"

	"connectrpc.com/connect"
	"go.uber.org/zap"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	stockguardv1 "github.com/stockguard/stockguard/gen/stockguard/v1"
	"github.com/stockguard/stockguard/modules/inventory"
	invmem "github.com/stockguard/stockguard/modules/inventory/memory"
	"github.com/stockguard/stockguard/modules/orders"
	ordmem "github.com/stockguard/stockguard/modules/orders/memory"
	"github.com/stockguard/stockguard/platform/auth"
)

// The fuzz targets feed arbitrary bytes, decoded as protojson or binary
// protobuf, to every unary RPC over the in-memory stores. Whatever arrives,
// the handler must not panic and must answer either success or a
// classified error: never internal or unknown, which would mean input
// reached a code path that does not validate it.

const seedItem = "0192f0c4-6f1e-7a4b-9c1d-2e3f4a5b6c7d"

type fuzzEnv struct {
	inv *InventoryHandler
	ord *OrderHandler
	ctx context.Context
}

func newFuzzEnv(t testing.TB) fuzzEnv {
	items := invmem.NewItemStore()
	store := ordmem.NewOrderStore(items)
	inv := inventory.NewService(items)
	if _, err := items.CreateItem(context.Background(), inventory.Item{ID: seedItem, SKU: "SEED", Name: "seed", InitialStock: 1000, Available: 1000, Version: 1}); err != nil {
		t.Fatal(err)
	}
	ctx := auth.WithPrincipal(context.Background(), auth.Principal{Subject: "fuzzer", Role: auth.RoleAdmin})
	return fuzzEnv{inv: NewInventoryHandler(inv, zap.NewNop()), ord: NewOrderHandler(orders.NewService(store), zap.NewNop()), ctx: ctx}
}

func decode(data []byte, msg proto.Message) bool {
	if protojson.Unmarshal(data, msg) == nil {
		return true
	}
	proto.Reset(msg)
	return proto.Unmarshal(data, msg) == nil
}

func classified(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	var ce *connect.Error
	if !errors.As(err, &ce) {
		t.Fatalf("unclassified error %T: %v", err, err)
	}
	if ce.Code() == connect.CodeInternal || ce.Code() == connect.CodeUnknown {
		t.Fatalf("input reached an internal error: %v", err)
	}
}

func fuzzRPC[Req any, PReq interface {
	*Req
	proto.Message
}](f *testing.F, seeds []string, call func(env fuzzEnv, req *connect.Request[Req]) error) {
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	env := newFuzzEnv(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		msg := PReq(new(Req))
		if !decode(data, msg) {
			return
		}
		classified(t, call(env, connect.NewRequest((*Req)(msg))))
	})
}

func FuzzCreateItem(f *testing.F) {
	fuzzRPC(f, []string{`{"sku":"A-1","name":"a","initialStock":5}`, `{"sku":"","initialStock":-1}`, `{"maxPerCustomer":2147483647}`},
		func(env fuzzEnv, req *connect.Request[stockguardv1.CreateItemRequest]) error {
			_, err := env.inv.CreateItem(env.ctx, req)
			return err
		})
}

func FuzzGetItem(f *testing.F) {
	fuzzRPC(f, []string{`{"itemId":"` + seedItem + `"}`, `{"itemId":"x"}`, `{}`},
		func(env fuzzEnv, req *connect.Request[stockguardv1.GetItemRequest]) error {
			_, err := env.inv.GetItem(env.ctx, req)
			return err
		})
}

func FuzzListItems(f *testing.F) {
	fuzzRPC(f, []string{`{"pageSize":2}`, `{"pageToken":"!!"}`, `{"pageSize":-5}`},
		func(env fuzzEnv, req *connect.Request[stockguardv1.ListItemsRequest]) error {
			_, err := env.inv.ListItems(env.ctx, req)
			return err
		})
}

func FuzzAdjustStock(f *testing.F) {
	fuzzRPC(f, []string{`{"itemId":"` + seedItem + `","delta":5}`, `{"itemId":"` + seedItem + `","delta":-2147483648}`, `{"delta":0}`},
		func(env fuzzEnv, req *connect.Request[stockguardv1.AdjustStockRequest]) error {
			_, err := env.inv.AdjustStock(env.ctx, req)
			return err
		})
}

func FuzzPlaceOrder(f *testing.F) {
	fuzzRPC(f, []string{
		`{"lines":[{"itemId":"` + seedItem + `","quantity":1}]}`,
		`{"lines":[{"itemId":"` + seedItem + `","quantity":2147483647},{"itemId":"` + seedItem + `","quantity":2147483647}]}`,
		`{"lines":[],"holdSeconds":99999,"idempotencyKey":"\u0000"}`,
	}, func(env fuzzEnv, req *connect.Request[stockguardv1.PlaceOrderRequest]) error {
		_, err := env.ord.PlaceOrder(env.ctx, req)
		return err
	})
}

func FuzzGetOrder(f *testing.F) {
	fuzzRPC(f, []string{`{"orderId":"` + seedItem + `"}`, `{"orderId":""}`},
		func(env fuzzEnv, req *connect.Request[stockguardv1.GetOrderRequest]) error {
			_, err := env.ord.GetOrder(env.ctx, req)
			return err
		})
}

func FuzzListOrders(f *testing.F) {
	fuzzRPC(f, []string{`{"pageSize":1,"customerId":"bob"}`, `{"itemId":"nope"}`, `{"pageToken":"AAAA"}`},
		func(env fuzzEnv, req *connect.Request[stockguardv1.ListOrdersRequest]) error {
			_, err := env.ord.ListOrders(env.ctx, req)
			return err
		})
}

func FuzzConfirmOrder(f *testing.F) {
	fuzzRPC(f, []string{`{"orderId":"` + seedItem + `"}`, `{"orderId":"zz"}`},
		func(env fuzzEnv, req *connect.Request[stockguardv1.ConfirmOrderRequest]) error {
			_, err := env.ord.ConfirmOrder(env.ctx, req)
			return err
		})
}

func FuzzCancelOrder(f *testing.F) {
	fuzzRPC(f, []string{`{"orderId":"` + seedItem + `"}`, `{}`},
		func(env fuzzEnv, req *connect.Request[stockguardv1.CancelOrderRequest]) error {
			_, err := env.ord.CancelOrder(env.ctx, req)
			return err
		})
}
