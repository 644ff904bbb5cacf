package benchmarks

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"testing"

	"github.com/stockguard/stockguard/modules/broadcast"
)

type staticLevels map[string]broadcast.Update

func (s staticLevels) Levels(_ context.Context, ids []string) ([]broadcast.Update, error) {
	var out []broadcast.Update
	for _, id := range ids {
		if u, ok := s[id]; ok {
			out = append(out, u)
		}
	}
	return out, nil
}

// BenchmarkHubPublish measures one Publish to every subscriber of an item:
// the publisher's cost, which is what a purchase waits for. Subscribers are
// not drained, so after the first round every offer conflates.
func BenchmarkHubPublish(b *testing.B) {
	for _, n := range []int{100, 1_000, 10_000} {
		b.Run(strconv.Itoa(n)+"_subscribers", func(b *testing.B) {
			h := broadcast.NewHub(staticLevels{"item": {ItemID: "item", Version: 1}})
			subs := make([]*broadcast.Subscriber, n)
			for i := range subs {
				subs[i] = h.NewSubscriber(1)
				if _, err := h.Subscribe(context.Background(), subs[i], []string{"item"}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				if err := h.Publish(broadcast.Update{ItemID: "item", Available: 5, Version: int64(i) + 2}); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/subscriber")
			for _, s := range subs {
				h.Close(s)
			}
		})
	}
}

// BenchmarkHubPublishUnwatched measures a Publish that reaches no one: the
// common case for a store of many items, each change of which is
// announced.
func BenchmarkHubPublishUnwatched(b *testing.B) {
	h := broadcast.NewHub(staticLevels{})
	b.ReportAllocs()
	for i := range b.N {
		if err := h.Publish(broadcast.Update{ItemID: "item", Available: 5, Version: int64(i) + 2}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHubPublishAndDrain adds the writers' side: every subscriber
// takes its frame after each publish, as a fast client would.
func BenchmarkHubPublishAndDrain(b *testing.B) {
	const n = 10_000
	h := broadcast.NewHub(staticLevels{"item": {ItemID: "item", Version: 1}})
	subs := make([]*broadcast.Subscriber, n)
	for i := range subs {
		subs[i] = h.NewSubscriber(1)
		_, _ = h.Subscribe(context.Background(), subs[i], []string{"item"})
		_, _ = subs[i].TryNext()
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		_ = h.Publish(broadcast.Update{ItemID: "item", Version: int64(i) + 2})
		for _, s := range subs {
			if f, _ := s.TryNext(); len(f) != 1 {
				b.Fatalf("subscriber got %d frames", len(f))
			}
		}
	}
}

// BenchmarkEncode compares encoding an update once for every subscriber
// (what the hub does) with encoding it per subscriber (what a naive hub
// does), for 1,000 subscribers.
func BenchmarkEncode(b *testing.B) {
	u := broadcast.Update{ItemID: "0192f0c4-6f1e-7a4b-9c1d-2e3f4a5b6c7d", Available: 97, Reserved: 2, Sold: 1, Version: 42}
	const subscribers = 1_000
	b.Run("once_per_update", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			f, err := broadcast.Encode(u)
			if err != nil {
				b.Fatal(err)
			}
			for range subscribers {
				_ = f.JSON
			}
		}
	})
	b.Run("once_per_subscriber", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			for range subscribers {
				if _, err := broadcast.Encode(u); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}

// ExampleEncode shows the JSON frame a WebSocket client receives. protojson
// varies its whitespace from build to build on purpose, so the example
// compacts the frame before printing it.
func ExampleEncode() {
	f, _ := broadcast.Encode(broadcast.Update{ItemID: "a", Available: 1, Version: 2})
	var out bytes.Buffer
	if err := json.Compact(&out, f.JSON); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(out.String())
	// Output: {"itemId":"a","available":1,"reserved":0,"sold":0,"version":"2"}
}
