package orders

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/stockguard/stockguard/modules/inventory"
	"github.com/stockguard/stockguard/platform/validation"
)

// Limits on PlaceOrder input.
const (
	MaxLines             = 50
	MaxIdempotencyKeyLen = 128
	MaxHoldSeconds       = 3600
)

// Status is where an order is in its life.
type Status int8

// Order statuses. The values match the API enum.
const (
	StatusPending   Status = 1
	StatusConfirmed Status = 2
	StatusCancelled Status = 3
	StatusExpired   Status = 4
)

func (s Status) String() string {
	switch s {
	case StatusPending:
		return "PENDING"
	case StatusConfirmed:
		return "CONFIRMED"
	case StatusCancelled:
		return "CANCELLED"
	case StatusExpired:
		return "EXPIRED"
	}
	return "Status(" + strconv.Itoa(int(s)) + ")"
}

// Line is a quantity of one item.
type Line struct {
	ItemID   string
	Quantity int32
}

// Order is a customer's claim on stock.
type Order struct {
	ID             string
	CustomerID     string
	Status         Status
	Lines          []Line // as placed
	IdempotencyKey string
	// RequestHash fingerprints the request, so that a replay with the same
	// idempotency key can be told apart from a different request.
	RequestHash string
	CreateTime  time.Time
	UpdateTime  time.Time
	ExpireTime  time.Time // zero unless the order was placed as a hold
}

// Demand sums the lines per item and returns one line per item in ascending
// item id order: the order in which stores lock item rows.
func Demand(lines []Line) []Line {
	sum := make(map[string]int64, len(lines))
	for _, l := range lines {
		sum[l.ItemID] += int64(l.Quantity)
	}
	out := make([]Line, 0, len(sum))
	for id, q := range sum {
		out = append(out, Line{ItemID: id, Quantity: int32(q)})
	}
	slices.SortFunc(out, func(a, b Line) int {
		switch {
		case a.ItemID < b.ItemID:
			return -1
		case a.ItemID > b.ItemID:
			return 1
		}
		return 0
	})
	return out
}

// Caller is who is asking, as established by the transport.
type Caller struct {
	CustomerID string
	Admin      bool
}

// owns reports whether the caller may read and cancel o.
func (c Caller) owns(o Order) bool { return c.CustomerID == o.CustomerID }

// PlaceRequest is the input of PlaceOrder.
type PlaceRequest struct {
	Lines          []Line
	IdempotencyKey string
	HoldSeconds    int32
}

// Validate reports every problem with r at once.
func (r PlaceRequest) Validate() error {
	var v validation.Error
	if len(r.Lines) == 0 || len(r.Lines) > MaxLines {
		v.Add("lines", "must have between 1 and %d lines", MaxLines)
	}
	sum := map[string]int64{}
	for i, l := range r.Lines {
		if _, err := uuid.Parse(l.ItemID); err != nil || len(l.ItemID) != 36 {
			v.Add(fmt.Sprintf("lines[%d].item_id", i), "must be an item id (a UUID)")
		}
		if l.Quantity < 1 || l.Quantity > inventory.MaxStock {
			v.Add(fmt.Sprintf("lines[%d].quantity", i), "must be between 1 and %d", inventory.MaxStock)
		}
		sum[l.ItemID] += int64(l.Quantity)
		if sum[l.ItemID] > inventory.MaxStock {
			v.Add(fmt.Sprintf("lines[%d].quantity", i), "lines for item %s add up to more than %d", l.ItemID, inventory.MaxStock)
		}
	}
	if len(r.IdempotencyKey) > MaxIdempotencyKeyLen {
		v.Add("idempotency_key", "must be at most %d characters", MaxIdempotencyKeyLen)
	}
	for _, c := range r.IdempotencyKey {
		if c < 0x21 || c > 0x7e {
			v.Add("idempotency_key", "must be printable ASCII without spaces")
			break
		}
	}
	if r.HoldSeconds < 0 || r.HoldSeconds > MaxHoldSeconds {
		v.Add("hold_seconds", "must be 0 (buy now) or up to %d seconds", MaxHoldSeconds)
	}
	return v.Err()
}

// Hash fingerprints what the request asks for: its summed demand and hold.
// Two requests with equal hashes buy the same thing.
func (r PlaceRequest) Hash() string {
	h := sha256.New()
	fmt.Fprintf(h, "hold=%d;", r.HoldSeconds)
	for _, l := range Demand(r.Lines) {
		fmt.Fprintf(h, "%s=%d;", l.ItemID, l.Quantity)
	}
	return hex.EncodeToString(h.Sum(nil))
}

var (
	// ErrOrderNotFound means no order has the id, or the caller may not see it.
	ErrOrderNotFound = errors.New("order not found")
	// ErrHoldExpired means the hold ran out before it was confirmed; its
	// stock has been returned.
	ErrHoldExpired = errors.New("hold expired before confirmation")
	// ErrIdempotencyKeyReused means the key was used before for a different request.
	ErrIdempotencyKeyReused = errors.New("idempotency key already used for a different request")
	// ErrNotPending means the order cannot be confirmed because it is cancelled.
	ErrNotPending = errors.New("order is not pending")
	// ErrNotOwner means the caller may read the order but not change it this way.
	ErrNotOwner = errors.New("only the customer who placed the order may do this")
	// ErrUnauthenticated means there is no customer to place the order for.
	ErrUnauthenticated = errors.New("no customer identity")
	// ErrUnavailable means the store could not answer in time. Nothing was
	// changed, or, for PlaceOrder with an idempotency key, a retry with the
	// same key is safe.
	ErrUnavailable = errors.New("order store temporarily unavailable")
)

// LimitExceededError means the order would take the customer past an item's
// per-customer limit.
type LimitExceededError struct {
	ItemID    string
	Limit     int32
	Held      int32 // units the customer already holds or owns
	Requested int32
}

func (e *LimitExceededError) Error() string {
	return fmt.Sprintf("per-customer limit for item %s is %d: already %d, requested %d", e.ItemID, e.Limit, e.Held, e.Requested)
}

// SortedIDs sorts ids in place, ascending, and returns them.
func SortedIDs(ids []string) []string {
	slices.Sort(ids)
	return ids
}
