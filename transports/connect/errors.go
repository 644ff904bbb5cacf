package connect

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"strconv"
	"time"

	"connectrpc.com/connect"
	"go.uber.org/zap"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/stockguard/stockguard/modules/inventory"
	"github.com/stockguard/stockguard/modules/orders"
	"github.com/stockguard/stockguard/platform/auth"
	"github.com/stockguard/stockguard/platform/validation"
)

// ErrorDomain is the google.rpc.ErrorInfo domain of every stockguard error.
const ErrorDomain = "stockguard.dev"

// Error reasons, carried in google.rpc.ErrorInfo. Clients branch on these,
// never on messages.
const (
	ReasonInvalidArgument      = "INVALID_ARGUMENT"
	ReasonUnauthenticated      = "UNAUTHENTICATED"
	ReasonPermissionDenied     = "PERMISSION_DENIED"
	ReasonItemNotFound         = "ITEM_NOT_FOUND"
	ReasonSKUExists            = "SKU_EXISTS"
	ReasonInsufficientStock    = "INSUFFICIENT_STOCK"
	ReasonLimitExceeded        = "LIMIT_EXCEEDED"
	ReasonIdempotencyKeyReused = "IDEMPOTENCY_KEY_REUSED"
	ReasonOrderNotFound        = "ORDER_NOT_FOUND"
	ReasonHoldExpired          = "HOLD_EXPIRED"
	ReasonOrderNotPending      = "ORDER_NOT_PENDING"
	ReasonNotOrderOwner        = "NOT_ORDER_OWNER"
	ReasonStoreUnavailable     = "STORE_UNAVAILABLE"
	ReasonInternal             = "INTERNAL"
	ReasonOverloaded           = "OVERLOADED"
)

func withInfo(code connect.Code, msg, reason string, meta map[string]string, extra ...proto.Message) *connect.Error {
	e := connect.NewError(code, errors.New(msg))
	if d, err := connect.NewErrorDetail(&errdetails.ErrorInfo{Reason: reason, Domain: ErrorDomain, Metadata: meta}); err == nil {
		e.AddDetail(d)
	}
	for _, m := range extra {
		if d, err := connect.NewErrorDetail(m); err == nil {
			e.AddDetail(d)
		}
	}
	return e
}

func itoa(n int32) string { return strconv.FormatInt(int64(n), 10) }

// toConnectError maps a domain error to its API code and reason. Errors it
// does not know are internal: the client gets an error id, the log gets the
// error under the same id.
func toConnectError(ctx context.Context, log *zap.Logger, procedure string, err error) error {
	var ce *connect.Error
	if errors.As(err, &ce) {
		return ce
	}
	var ve *validation.Error
	var ise *inventory.InsufficientStockError
	var lee *orders.LimitExceededError
	switch {
	case errors.As(err, &ve):
		br := &errdetails.BadRequest{}
		for _, v := range ve.Violations {
			br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{Field: v.Field, Description: v.Description})
		}
		return withInfo(connect.CodeInvalidArgument, ve.Error(), ReasonInvalidArgument, nil, br)
	case errors.As(err, &ise):
		return withInfo(connect.CodeFailedPrecondition, ise.Error(), ReasonInsufficientStock, map[string]string{
			"item_id": ise.ItemID, "requested": itoa(ise.Requested), "available": itoa(ise.Available),
		})
	case errors.As(err, &lee):
		return withInfo(connect.CodeFailedPrecondition, lee.Error(), ReasonLimitExceeded, map[string]string{
			"item_id": lee.ItemID, "limit": itoa(lee.Limit), "held": itoa(lee.Held), "requested": itoa(lee.Requested),
		})
	case errors.Is(err, inventory.ErrItemNotFound):
		return withInfo(connect.CodeNotFound, err.Error(), ReasonItemNotFound, nil)
	case errors.Is(err, inventory.ErrSKUExists):
		return withInfo(connect.CodeAlreadyExists, err.Error(), ReasonSKUExists, nil)
	case errors.Is(err, orders.ErrOrderNotFound):
		return withInfo(connect.CodeNotFound, err.Error(), ReasonOrderNotFound, nil)
	case errors.Is(err, orders.ErrIdempotencyKeyReused):
		return withInfo(connect.CodeAlreadyExists, err.Error(), ReasonIdempotencyKeyReused, nil)
	case errors.Is(err, orders.ErrHoldExpired):
		return withInfo(connect.CodeFailedPrecondition, err.Error(), ReasonHoldExpired, nil)
	case errors.Is(err, orders.ErrNotPending):
		return withInfo(connect.CodeFailedPrecondition, err.Error(), ReasonOrderNotPending, nil)
	case errors.Is(err, orders.ErrNotOwner):
		return withInfo(connect.CodePermissionDenied, err.Error(), ReasonNotOrderOwner, nil)
	case errors.Is(err, orders.ErrUnauthenticated):
		return withInfo(connect.CodeUnauthenticated, "a customer token is required", ReasonUnauthenticated, nil)
	case errors.Is(err, auth.ErrInvalidToken):
		return withInfo(connect.CodeUnauthenticated, err.Error(), ReasonUnauthenticated, nil)
	case errors.Is(err, orders.ErrOverloaded):
		e := withInfo(connect.CodeResourceExhausted, err.Error(), ReasonOverloaded, map[string]string{"retry_after_seconds": "1"},
			&errdetails.RetryInfo{RetryDelay: durationpb.New(100 * time.Millisecond)})
		e.Meta().Set("Retry-After", "1")
		return e
	case orders.IsRetryable(err):
		log.Warn("store unavailable", zap.String("procedure", procedure), zap.Error(err))
		return withInfo(connect.CodeUnavailable, "the stock store is busy; retry shortly (with the same idempotency key)", ReasonStoreUnavailable, nil)
	case errors.Is(err, context.Canceled) && ctx.Err() != nil:
		return connect.NewError(connect.CodeCanceled, errors.New("request cancelled"))
	case errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil:
		return connect.NewError(connect.CodeDeadlineExceeded, errors.New("request deadline exceeded"))
	}
	id := newErrorID()
	log.Error("internal error", zap.String("error_id", id), zap.String("procedure", procedure), zap.Error(err))
	return withInfo(connect.CodeInternal, "internal error; quote error id "+id+" when reporting it", ReasonInternal,
		map[string]string{"error_id": id})
}

func newErrorID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
