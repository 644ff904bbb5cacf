package connect

import (
	"google.golang.org/protobuf/types/known/timestamppb"

	stockguardv1 "github.com/stockguard/stockguard/gen/stockguard/v1"
	"github.com/stockguard/stockguard/modules/inventory"
	"github.com/stockguard/stockguard/modules/orders"
)

func itemToProto(it inventory.Item) *stockguardv1.Item {
	return &stockguardv1.Item{
		Id:             it.ID,
		Sku:            it.SKU,
		Name:           it.Name,
		Available:      it.Available,
		Reserved:       it.Reserved,
		Sold:           it.Sold,
		MaxPerCustomer: it.MaxPerCustomer,
		Version:        it.Version,
		CreateTime:     timestamppb.New(it.CreateTime),
	}
}

func orderToProto(o orders.Order) *stockguardv1.Order {
	out := &stockguardv1.Order{
		Id:             o.ID,
		CustomerId:     o.CustomerID,
		Status:         stockguardv1.OrderStatus(o.Status),
		Lines:          make([]*stockguardv1.OrderLine, len(o.Lines)),
		CreateTime:     timestamppb.New(o.CreateTime),
		UpdateTime:     timestamppb.New(o.UpdateTime),
		IdempotencyKey: o.IdempotencyKey,
	}
	for i, l := range o.Lines {
		out.Lines[i] = &stockguardv1.OrderLine{ItemId: l.ItemID, Quantity: l.Quantity}
	}
	if !o.ExpireTime.IsZero() {
		out.ExpireTime = timestamppb.New(o.ExpireTime)
	}
	return out
}

func linesFromProto(in []*stockguardv1.OrderLine) []orders.Line {
	out := make([]orders.Line, len(in))
	for i, l := range in {
		out[i] = orders.Line{ItemID: l.GetItemId(), Quantity: l.GetQuantity()}
	}
	return out
}
