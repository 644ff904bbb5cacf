package connect

import (
	"context"
	"strings"

	"connectrpc.com/connect"

	"github.com/stockguard/stockguard/gen/stockguard/v1/stockguardv1connect"
	"github.com/stockguard/stockguard/modules/orders"
	"github.com/stockguard/stockguard/platform/auth"
)

// access is what a procedure asks of its caller.
type access int

const (
	public        access = iota + 1 // anyone; a token, if sent, must be valid
	authenticated                   // any valid token (customers act on their own orders)
	adminOnly                       // a valid token with role admin
)

// policy lists every procedure. A procedure missing here is refused, so a
// new RPC cannot ship without a decision about who may call it.
var policy = map[string]access{
	stockguardv1connect.InventoryServiceCreateItemProcedure:  adminOnly,
	stockguardv1connect.InventoryServiceGetItemProcedure:     public,
	stockguardv1connect.InventoryServiceListItemsProcedure:   public,
	stockguardv1connect.InventoryServiceAdjustStockProcedure: adminOnly,
	stockguardv1connect.OrderServicePlaceOrderProcedure:      authenticated,
	stockguardv1connect.OrderServiceGetOrderProcedure:        authenticated,
	stockguardv1connect.OrderServiceListOrdersProcedure:      authenticated,
	stockguardv1connect.OrderServiceConfirmOrderProcedure:    authenticated,
	stockguardv1connect.OrderServiceCancelOrderProcedure:     authenticated,
	stockguardv1connect.StockServiceWatchStockProcedure:      public,
}

// Verifier checks bearer tokens.
type Verifier interface {
	Verify(token string) (auth.Principal, error)
}

// authInterceptor authenticates every call and enforces policy.
type authInterceptor struct {
	verifier Verifier
}

func (a *authInterceptor) authorize(ctx context.Context, procedure string, header interface{ Get(string) string }) (context.Context, error) {
	need, known := policy[procedure]
	if !known {
		return ctx, withInfo(connect.CodePermissionDenied, "procedure not allowed", ReasonPermissionDenied, nil)
	}
	raw := header.Get("Authorization")
	if raw == "" {
		if need == public {
			return ctx, nil
		}
		return ctx, withInfo(connect.CodeUnauthenticated, "missing bearer token: send Authorization: Bearer <token>", ReasonUnauthenticated, nil)
	}
	scheme, token, ok := strings.Cut(raw, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return ctx, withInfo(connect.CodeUnauthenticated, "malformed Authorization header: expected Bearer <token>", ReasonUnauthenticated, nil)
	}
	p, err := a.verifier.Verify(strings.TrimSpace(token))
	if err != nil {
		return ctx, withInfo(connect.CodeUnauthenticated, err.Error(), ReasonUnauthenticated, nil)
	}
	if need == adminOnly && !p.IsAdmin() {
		return ctx, withInfo(connect.CodePermissionDenied, "this call needs the admin role", ReasonPermissionDenied, nil)
	}
	if rec := recordFrom(ctx); rec != nil {
		rec.mu.Lock()
		rec.subject = p.Subject
		rec.mu.Unlock()
	}
	return auth.WithPrincipal(ctx, p), nil
}

func (a *authInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		ctx, err := a.authorize(ctx, req.Spec().Procedure, req.Header())
		if err != nil {
			return nil, err
		}
		return next(ctx, req)
	}
}

func (a *authInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (a *authInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		ctx, err := a.authorize(ctx, conn.Spec().Procedure, conn.RequestHeader())
		if err != nil {
			return err
		}
		return next(ctx, conn)
	}
}

// callerFrom turns the authenticated principal into the orders module's caller.
func callerFrom(ctx context.Context) (orders.Caller, error) {
	p, ok := auth.FromContext(ctx)
	if !ok {
		return orders.Caller{}, orders.ErrUnauthenticated
	}
	return orders.Caller{CustomerID: p.Subject, Admin: p.IsAdmin()}, nil
}
