package connect

import (
	"context"
	"math"
	"strconv"
	"sync"
	"time"

	"connectrpc.com/connect"
	"golang.org/x/time/rate"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/stockguard/stockguard/platform/auth"
)

// ReasonRateLimited is the ErrorInfo reason of a call refused by the rate limiter.
const ReasonRateLimited = "RATE_LIMITED"

// Bounds on the rate limiter's memory.
const (
	rateLimitMaxKeys = 100_000          // callers tracked at once
	rateLimitIdleTTL = 10 * time.Minute // a bucket unused this long is dropped
)

// RateLimiter gives every caller (the token's subject, or the peer address
// for anonymous calls) a token bucket. Its state is bounded: idle buckets
// are pruned, and at most rateLimitMaxKeys are kept.
type RateLimiter struct {
	limit   rate.Limit
	burst   int
	maxKeys int
	idleTTL time.Duration
	now     func() time.Time

	mu        sync.Mutex
	buckets   map[string]*bucket
	lastPrune time.Time
}

type bucket struct {
	lim  *rate.Limiter
	seen time.Time
}

// NewRateLimiter allows rps calls per second per caller with bursts of
// burst. A zero rps returns nil: no limit.
func NewRateLimiter(rps float64, burst int) *RateLimiter {
	if rps <= 0 {
		return nil
	}
	return &RateLimiter{
		limit: rate.Limit(rps), burst: burst, maxKeys: rateLimitMaxKeys, idleTTL: rateLimitIdleTTL,
		now: time.Now, buckets: map[string]*bucket{},
	}
}

// Allow takes a token for key, or says how long until one is free.
func (r *RateLimiter) Allow(key string) (bool, time.Duration) {
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	b, ok := r.buckets[key]
	if !ok {
		if len(r.buckets) >= r.maxKeys || now.Sub(r.lastPrune) > time.Minute {
			r.prune(now)
		}
		b = &bucket{lim: rate.NewLimiter(r.limit, r.burst)}
		r.buckets[key] = b
	}
	b.seen = now
	res := b.lim.ReserveN(now, 1)
	if delay := res.DelayFrom(now); delay > 0 {
		res.CancelAt(now)
		return false, delay
	}
	return true, 0
}

// prune drops idle buckets, then arbitrary ones while still over the bound.
// An idle bucket is full again anyway, so dropping it changes no decision.
func (r *RateLimiter) prune(now time.Time) {
	r.lastPrune = now
	for k, b := range r.buckets {
		if now.Sub(b.seen) > r.idleTTL {
			delete(r.buckets, k)
		}
	}
	for k := range r.buckets {
		if len(r.buckets) < r.maxKeys {
			break
		}
		delete(r.buckets, k)
	}
}

// Len is how many callers are tracked.
func (r *RateLimiter) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.buckets)
}

// rateInterceptor refuses calls past a caller's rate with
// resource_exhausted (HTTP 429) and a Retry-After header. It runs after
// authentication, so customers are limited by identity, not address.
type rateInterceptor struct{ limiter *RateLimiter }

func (i rateInterceptor) check(ctx context.Context, peer connect.Peer) error {
	key := "peer:" + peer.Addr
	if p, ok := auth.FromContext(ctx); ok {
		key = "sub:" + p.Subject
	}
	ok, wait := i.limiter.Allow(key)
	if ok {
		return nil
	}
	secs := int(math.Ceil(wait.Seconds()))
	e := withInfo(connect.CodeResourceExhausted, "rate limit exceeded; retry after "+strconv.Itoa(secs)+"s", ReasonRateLimited,
		map[string]string{"retry_after_seconds": strconv.Itoa(secs)}, &errdetails.RetryInfo{RetryDelay: durationpb.New(wait)})
	e.Meta().Set("Retry-After", strconv.Itoa(secs))
	return e
}

func (i rateInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if err := i.check(ctx, req.Peer()); err != nil {
			return nil, err
		}
		return next(ctx, req)
	}
}

func (i rateInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (i rateInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		if err := i.check(ctx, conn.Peer()); err != nil {
			return err
		}
		return next(ctx, conn)
	}
}
