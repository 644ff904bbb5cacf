package connect

import (
	"context"

	"connectrpc.com/connect"
	"go.uber.org/zap"

	stockguardv1 "github.com/stockguard/stockguard/gen/stockguard/v1"
	"github.com/stockguard/stockguard/gen/stockguard/v1/stockguardv1connect"
	"github.com/stockguard/stockguard/modules/inventory"
	"github.com/stockguard/stockguard/modules/orders"
	"github.com/stockguard/stockguard/platform/validation"
)

// IdempotencyKeyHeader is the REST alternative to the idempotency_key field.
const IdempotencyKeyHeader = "Idempotency-Key"

// InventoryHandler serves stockguard.v1.InventoryService.
type InventoryHandler struct {
	svc *inventory.Service
	log *zap.Logger
}

var _ stockguardv1connect.InventoryServiceHandler = (*InventoryHandler)(nil)

// NewInventoryHandler returns a handler over svc.
func NewInventoryHandler(svc *inventory.Service, log *zap.Logger) *InventoryHandler {
	return &InventoryHandler{svc: svc, log: log}
}

// CreateItem implements stockguardv1connect.InventoryServiceHandler.
func (h *InventoryHandler) CreateItem(ctx context.Context, req *connect.Request[stockguardv1.CreateItemRequest]) (*connect.Response[stockguardv1.CreateItemResponse], error) {
	it, err := h.svc.CreateItem(ctx, inventory.NewItem{
		SKU:            req.Msg.GetSku(),
		Name:           req.Msg.GetName(),
		InitialStock:   req.Msg.GetInitialStock(),
		MaxPerCustomer: req.Msg.GetMaxPerCustomer(),
	})
	if err != nil {
		return nil, toConnectError(ctx, h.log, req.Spec().Procedure, err)
	}
	return connect.NewResponse(&stockguardv1.CreateItemResponse{Item: itemToProto(it)}), nil
}

// GetItem implements stockguardv1connect.InventoryServiceHandler.
func (h *InventoryHandler) GetItem(ctx context.Context, req *connect.Request[stockguardv1.GetItemRequest]) (*connect.Response[stockguardv1.GetItemResponse], error) {
	it, err := h.svc.GetItem(ctx, req.Msg.GetItemId())
	if err != nil {
		return nil, toConnectError(ctx, h.log, req.Spec().Procedure, err)
	}
	return connect.NewResponse(&stockguardv1.GetItemResponse{Item: itemToProto(it)}), nil
}

// ListItems implements stockguardv1connect.InventoryServiceHandler.
func (h *InventoryHandler) ListItems(ctx context.Context, req *connect.Request[stockguardv1.ListItemsRequest]) (*connect.Response[stockguardv1.ListItemsResponse], error) {
	page, err := h.svc.ListItems(ctx, inventory.ListParams{PageSize: int(req.Msg.GetPageSize()), PageToken: req.Msg.GetPageToken()})
	if err != nil {
		return nil, toConnectError(ctx, h.log, req.Spec().Procedure, err)
	}
	out := &stockguardv1.ListItemsResponse{NextPageToken: page.NextPageToken, Items: make([]*stockguardv1.Item, len(page.Items))}
	for i, it := range page.Items {
		out.Items[i] = itemToProto(it)
	}
	return connect.NewResponse(out), nil
}

// AdjustStock implements stockguardv1connect.InventoryServiceHandler.
func (h *InventoryHandler) AdjustStock(ctx context.Context, req *connect.Request[stockguardv1.AdjustStockRequest]) (*connect.Response[stockguardv1.AdjustStockResponse], error) {
	it, err := h.svc.AdjustStock(ctx, req.Msg.GetItemId(), req.Msg.GetDelta())
	if err != nil {
		return nil, toConnectError(ctx, h.log, req.Spec().Procedure, err)
	}
	return connect.NewResponse(&stockguardv1.AdjustStockResponse{Item: itemToProto(it)}), nil
}

// OrderHandler serves stockguard.v1.OrderService.
type OrderHandler struct {
	svc     *orders.Service
	log     *zap.Logger
	metrics *Metrics // nil: not recorded
}

var _ stockguardv1connect.OrderServiceHandler = (*OrderHandler)(nil)

// NewOrderHandler returns a handler over svc.
func NewOrderHandler(svc *orders.Service, log *zap.Logger) *OrderHandler {
	return &OrderHandler{svc: svc, log: log}
}

// WithMetrics makes the handler count order outcomes in m.
func (h *OrderHandler) WithMetrics(m *Metrics) *OrderHandler {
	h.metrics = m
	return h
}

// orderCall runs one order use case for the authenticated caller.
func orderCall[Req, Res any](ctx context.Context, h *OrderHandler, req *connect.Request[Req],
	run func(orders.Caller) (orders.Order, error), wrap func(*stockguardv1.Order) *Res,
) (*connect.Response[Res], error) {
	caller, err := callerFrom(ctx)
	if err == nil {
		var o orders.Order
		if o, err = run(caller); err == nil {
			return connect.NewResponse(wrap(orderToProto(o))), nil
		}
	}
	return nil, toConnectError(ctx, h.log, req.Spec().Procedure, err)
}

// PlaceOrder implements stockguardv1connect.OrderServiceHandler.
func (h *OrderHandler) PlaceOrder(ctx context.Context, req *connect.Request[stockguardv1.PlaceOrderRequest]) (*connect.Response[stockguardv1.PlaceOrderResponse], error) {
	key := req.Msg.GetIdempotencyKey()
	if header := req.Header().Get(IdempotencyKeyHeader); header != "" {
		if key != "" && key != header {
			var v validation.Error
			v.Add("idempotency_key", "differs from the %s header; send one of them, or the same key in both", IdempotencyKeyHeader)
			return nil, toConnectError(ctx, h.log, req.Spec().Procedure, v.Err())
		}
		key = header
	}
	res, err := orderCall(ctx, h, req, func(c orders.Caller) (orders.Order, error) {
		o, replayed, err := h.svc.Place(ctx, c, orders.PlaceRequest{
			Lines:          linesFromProto(req.Msg.GetLines()),
			IdempotencyKey: key,
			HoldSeconds:    req.Msg.GetHoldSeconds(),
		})
		switch {
		case err == nil && replayed:
			h.metrics.orderOutcome("replayed", "")
		case err == nil:
			h.metrics.orderOutcome("placed", "")
		}
		return o, err
	}, func(o *stockguardv1.Order) *stockguardv1.PlaceOrderResponse {
		return &stockguardv1.PlaceOrderResponse{Order: o}
	})
	if err != nil {
		reason := reasonOf(err)
		if reason == "" {
			reason = connect.CodeOf(err).String()
		}
		h.metrics.orderOutcome("rejected", reason)
	}
	return res, err
}

// GetOrder implements stockguardv1connect.OrderServiceHandler.
func (h *OrderHandler) GetOrder(ctx context.Context, req *connect.Request[stockguardv1.GetOrderRequest]) (*connect.Response[stockguardv1.GetOrderResponse], error) {
	return orderCall(ctx, h, req, func(c orders.Caller) (orders.Order, error) {
		return h.svc.GetOrder(ctx, c, req.Msg.GetOrderId())
	}, func(o *stockguardv1.Order) *stockguardv1.GetOrderResponse {
		return &stockguardv1.GetOrderResponse{Order: o}
	})
}

// ConfirmOrder implements stockguardv1connect.OrderServiceHandler.
func (h *OrderHandler) ConfirmOrder(ctx context.Context, req *connect.Request[stockguardv1.ConfirmOrderRequest]) (*connect.Response[stockguardv1.ConfirmOrderResponse], error) {
	return orderCall(ctx, h, req, func(c orders.Caller) (orders.Order, error) {
		return h.svc.ConfirmOrder(ctx, c, req.Msg.GetOrderId())
	}, func(o *stockguardv1.Order) *stockguardv1.ConfirmOrderResponse {
		return &stockguardv1.ConfirmOrderResponse{Order: o}
	})
}

// CancelOrder implements stockguardv1connect.OrderServiceHandler.
func (h *OrderHandler) CancelOrder(ctx context.Context, req *connect.Request[stockguardv1.CancelOrderRequest]) (*connect.Response[stockguardv1.CancelOrderResponse], error) {
	return orderCall(ctx, h, req, func(c orders.Caller) (orders.Order, error) {
		return h.svc.CancelOrder(ctx, c, req.Msg.GetOrderId())
	}, func(o *stockguardv1.Order) *stockguardv1.CancelOrderResponse {
		return &stockguardv1.CancelOrderResponse{Order: o}
	})
}

// ListOrders implements stockguardv1connect.OrderServiceHandler.
func (h *OrderHandler) ListOrders(ctx context.Context, req *connect.Request[stockguardv1.ListOrdersRequest]) (*connect.Response[stockguardv1.ListOrdersResponse], error) {
	caller, err := callerFrom(ctx)
	if err != nil {
		return nil, toConnectError(ctx, h.log, req.Spec().Procedure, err)
	}
	page, err := h.svc.ListOrders(ctx, caller, orders.ListParams{
		PageSize:   int(req.Msg.GetPageSize()),
		PageToken:  req.Msg.GetPageToken(),
		CustomerID: req.Msg.GetCustomerId(),
		ItemID:     req.Msg.GetItemId(),
	})
	if err != nil {
		return nil, toConnectError(ctx, h.log, req.Spec().Procedure, err)
	}
	out := &stockguardv1.ListOrdersResponse{NextPageToken: page.NextPageToken, Orders: make([]*stockguardv1.Order, len(page.Orders))}
	for i, o := range page.Orders {
		out.Orders[i] = orderToProto(o)
	}
	return connect.NewResponse(out), nil
}
