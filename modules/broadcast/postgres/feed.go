// Package postgres feeds the broadcast hub from PostgreSQL: it LISTENs on
// the stock channel that every stock-changing transaction NOTIFYs (so only
// committed changes arrive, from every replica), and after a lost
// connection it reconnects and resyncs every watched item.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"

	"github.com/stockguard/stockguard/modules/broadcast"
	pg "github.com/stockguard/stockguard/platform/postgres"
)

// Feed owns one LISTEN connection and its goroutine.
type Feed struct {
	connect func(ctx context.Context) (*pgx.Conn, error)
	hub     *broadcast.Hub
	log     *zap.Logger
	tracer  trace.Tracer

	listening  atomic.Bool
	reconnects atomic.Uint64
	notified   atomic.Uint64
	cancel     context.CancelFunc
	done       chan struct{}
}

// NewFeed returns a stopped feed that opens its connection with connect.
// Each broadcast gets a span on tp, linked to the transaction that made the
// change.
func NewFeed(connect func(ctx context.Context) (*pgx.Conn, error), hub *broadcast.Hub, log *zap.Logger, tp trace.TracerProvider) *Feed {
	return &Feed{connect: connect, hub: hub, log: log.Named("stock-feed"),
		tracer: tp.Tracer("github.com/stockguard/stockguard/modules/broadcast/postgres")}
}

// publish hands one notification to the hub, inside a span linked to the
// change's own trace when anyone watches the item. A batch spread over many
// items announces each of them, and a span for every one nobody watches
// would fill traces with broadcasts that send nothing.
func (f *Feed) publish(p pg.StockNotification) {
	if f.hub.Watched(p.ItemID) {
		opts := []trace.SpanStartOption{trace.WithAttributes(attribute.String("stockguard.item_id", p.ItemID), attribute.Int64("stockguard.version", p.Version))}
		if p.TraceParent != "" {
			cause := trace.SpanContextFromContext(propagation.TraceContext{}.Extract(context.Background(),
				propagation.MapCarrier{"traceparent": p.TraceParent}))
			if cause.IsValid() {
				opts = append(opts, trace.WithLinks(trace.Link{SpanContext: cause}))
			}
		}
		_, span := f.tracer.Start(context.Background(), "stockguard.broadcast.publish", opts...)
		defer span.End()
	}
	if err := f.hub.Publish(broadcast.Update{ItemID: p.ItemID, Available: p.Available, Reserved: p.Reserved, Sold: p.Sold, Version: p.Version}); err != nil {
		f.log.Error("publish", zap.Error(err))
	}
}

// Start listens, so that the app is ready only once changes are heard,
// then runs the listen loop in the background.
func (f *Feed) Start(ctx context.Context) error {
	conn, err := f.open(ctx)
	if err != nil {
		return fmt.Errorf("stock feed: %w", err)
	}
	loopCtx, cancel := context.WithCancel(context.Background())
	f.cancel, f.done = cancel, make(chan struct{})
	go f.loop(loopCtx, conn)
	return nil
}

// open connects and LISTENs.
func (f *Feed) open(ctx context.Context) (*pgx.Conn, error) {
	conn, err := f.connect(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := conn.Exec(ctx, "LISTEN "+pg.StockChannel); err != nil {
		_ = conn.Close(context.WithoutCancel(ctx))
		return nil, err
	}
	f.listening.Store(true)
	return conn, nil
}

// Stop ends the loop and closes the connection.
func (f *Feed) Stop(ctx context.Context) error {
	if f.cancel == nil {
		return nil
	}
	f.cancel()
	select {
	case <-f.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Check reports whether the feed is listening; readiness uses it.
func (f *Feed) Check(context.Context) error {
	if !f.listening.Load() {
		return errors.New("stock feed is not listening")
	}
	return nil
}

// Notifications counts the notifications relayed to the hub.
func (f *Feed) Notifications() uint64 { return f.notified.Load() }

// Reconnects counts how often the feed had to connect again.
func (f *Feed) Reconnects() uint64 { return f.reconnects.Load() }

func (f *Feed) loop(ctx context.Context, conn *pgx.Conn) {
	defer close(f.done)
	backoff := 100 * time.Millisecond
	for {
		err := f.listen(ctx, conn)
		f.listening.Store(false)
		if ctx.Err() != nil {
			return
		}
		f.reconnects.Add(1)
		f.log.Warn("stock feed lost its connection; reconnecting", zap.Error(err))
		for conn = nil; conn == nil; {
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			if conn, err = f.open(ctx); err != nil {
				if ctx.Err() != nil {
					return
				}
				backoff = min(backoff*2, 5*time.Second)
				f.log.Warn("stock feed reconnect failed", zap.Error(err), zap.Duration("next_try", backoff))
			}
		}
		backoff = 100 * time.Millisecond
		// Changes committed while we were away were not heard: re-read
		// every watched item so all watchers converge.
		if err := f.hub.Resync(ctx); err != nil {
			f.log.Warn("resync after reconnect failed", zap.Error(err))
		} else {
			f.log.Info("stock feed reconnected and resynced", zap.Int("items", len(f.hub.Topics())))
		}
	}
}

// listen relays notifications from conn until it fails or ctx ends, then
// closes it.
func (f *Feed) listen(ctx context.Context, conn *pgx.Conn) error {
	defer conn.Close(context.WithoutCancel(ctx))
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		notice, err := pg.ParseStockNotice(n.Payload)
		if err != nil {
			f.log.Error("bad stock notification", zap.String("payload", n.Payload), zap.Error(err))
			continue
		}
		for _, p := range notice.Items {
			p.TraceParent = notice.TraceParent
			f.notified.Add(1)
			f.publish(p)
		}
	}
}
