package postgres

import (
	"context"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.uber.org/zap"

	"github.com/stockguard/stockguard/modules/broadcast"
	pg "github.com/stockguard/stockguard/platform/postgres"
)

// levels answers every snapshot with version 1, so a change at version 2
// goes through to subscribers.
type levels struct{}

func (levels) Levels(_ context.Context, ids []string) ([]broadcast.Update, error) {
	out := make([]broadcast.Update, len(ids))
	for i, id := range ids {
		out[i] = broadcast.Update{ItemID: id, Version: 1}
	}
	return out, nil
}

// A change of an item nobody watches is counted and dropped with no span;
// a watched item's change is broadcast in a span linked to the purchase's
// trace.
func TestFeedPublish_SpanOnlyForWatchedItems(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	hub := broadcast.NewHub(levels{})
	f := NewFeed(nil, hub, zap.NewNop(), tp)
	const purchase = "4bf92f3577b34da6a3ce929d0e0e4736"
	tp0 := "00-" + purchase + "-00f067aa0ba902b7-01"

	f.publish(pg.StockNotification{ItemID: "unwatched", Available: 9, Sold: 1, Version: 2, TraceParent: tp0})
	if n := len(rec.Ended()); n != 0 {
		t.Fatalf("%d spans for an item nobody watches; want none", n)
	}
	if got := hub.Stats().Published; got != 1 {
		t.Fatalf("published = %d; want the dropped change counted", got)
	}

	sub := hub.NewSubscriber(10)
	t.Cleanup(func() { hub.Close(sub) })
	if _, err := hub.Subscribe(context.Background(), sub, []string{"watched"}); err != nil {
		t.Fatal(err)
	}
	f.publish(pg.StockNotification{ItemID: "watched", Available: 9, Sold: 1, Version: 2, TraceParent: tp0})
	spans := rec.Ended()
	if len(spans) != 1 || spans[0].Name() != "stockguard.broadcast.publish" {
		t.Fatalf("spans = %v; want one stockguard.broadcast.publish", spans)
	}
	if links := spans[0].Links(); len(links) != 1 || links[0].SpanContext.TraceID().String() != purchase {
		t.Fatalf("links = %v; want one to the purchase's trace", links)
	}
	frames, err := sub.TryNext()
	if err != nil {
		t.Fatal(err)
	}
	var got []broadcast.Update
	for _, fr := range frames {
		got = append(got, fr.Update)
	}
	if len(got) == 0 || got[len(got)-1].Version != 2 || got[len(got)-1].Available != 9 {
		t.Fatalf("subscriber got %+v; want the change at version 2", got)
	}
}
