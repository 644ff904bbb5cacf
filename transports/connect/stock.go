package connect

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"connectrpc.com/connect"
	"go.uber.org/zap"

	stockguardv1 "github.com/stockguard/stockguard/gen/stockguard/v1"
	"github.com/stockguard/stockguard/gen/stockguard/v1/stockguardv1connect"
	"github.com/stockguard/stockguard/modules/broadcast"
	"github.com/stockguard/stockguard/modules/inventory"
	"github.com/stockguard/stockguard/platform/validation"
)

// MaxWatchItems bounds the items one WatchStock stream may watch.
const MaxWatchItems = 100

// StockHandler serves stockguard.v1.StockService from the broadcast hub:
// a snapshot of every requested item, then each change, conflated when the
// client reads slower than stock changes.
type StockHandler struct {
	hub *broadcast.Hub
	log *zap.Logger
}

var _ stockguardv1connect.StockServiceHandler = (*StockHandler)(nil)

// NewStockHandler returns a handler over hub.
func NewStockHandler(hub *broadcast.Hub, log *zap.Logger) *StockHandler {
	return &StockHandler{hub: hub, log: log}
}

// WatchStock implements stockguardv1connect.StockServiceHandler.
func (h *StockHandler) WatchStock(ctx context.Context, req *connect.Request[stockguardv1.WatchStockRequest], stream *connect.ServerStream[stockguardv1.StockUpdate]) error {
	ids := req.Msg.GetItemIds()
	var v validation.Error
	if len(ids) == 0 || len(ids) > MaxWatchItems {
		v.Add("item_ids", "must name between 1 and %d items", MaxWatchItems)
	}
	for i, id := range ids {
		if inventory.ValidateID("item_ids", id) != nil {
			v.Add("item_ids["+itoa(int32(i))+"]", "must be an item id (a UUID)")
		}
	}
	if err := v.Err(); err != nil {
		return toConnectError(ctx, h.log, req.Spec().Procedure, err)
	}
	sub := h.hub.NewSubscriber(MaxWatchItems)
	defer h.hub.Close(sub)
	unknown, err := h.hub.Subscribe(ctx, sub, ids)
	if err != nil {
		return toConnectError(ctx, h.log, req.Spec().Procedure, err)
	}
	if len(unknown) > 0 {
		return withInfo(connect.CodeNotFound, "no item has the ids "+strings.Join(unknown, ", "), ReasonItemNotFound,
			map[string]string{"item_ids": strings.Join(unknown, ",")})
	}
	for {
		frames, err := sub.Next(ctx)
		if errors.Is(err, broadcast.ErrClosed) || ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return toConnectError(ctx, h.log, req.Spec().Procedure, err)
		}
		for _, f := range frames {
			if err := stream.Send(f.Update.Message()); err != nil {
				return err
			}
		}
	}
}

// streamingDeadlines lifts the server's write and read timeouts for
// long-lived streams, which would otherwise be cut after WriteTimeout.
func streamingDeadlines(next http.Handler) http.Handler {
	watch := "/" + stockguardv1connect.StockServiceName + "/"
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, watch) {
			rc := http.NewResponseController(w)
			_ = rc.SetWriteDeadline(time.Time{})
			_ = rc.SetReadDeadline(time.Time{})
		}
		next.ServeHTTP(w, r)
	})
}
