package connect

import (
	"context"
	"errors"

	"connectrpc.com/connect"

	stockguardv1 "github.com/stockguard/stockguard/gen/stockguard/v1"
	"github.com/stockguard/stockguard/gen/stockguard/v1/stockguardv1connect"
)

// StockHandler serves stockguard.v1.StockService.
type StockHandler struct{}

var _ stockguardv1connect.StockServiceHandler = StockHandler{}

// WatchStock is not served yet: live updates arrive with the broadcast hub.
// It answers unimplemented so clients can tell it apart from a failure.
func (StockHandler) WatchStock(context.Context, *connect.Request[stockguardv1.WatchStockRequest], *connect.ServerStream[stockguardv1.StockUpdate]) error {
	return connect.NewError(connect.CodeUnimplemented, errors.New("WatchStock is not available in this build; poll GetItem"))
}
