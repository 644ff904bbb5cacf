package broadcast

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/mock/gomock"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	stockguardv1 "github.com/stockguard/stockguard/gen/stockguard/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeLevels answers snapshots from a map.
type fakeLevels struct {
	mu sync.Mutex
	m  map[string]Update
}

func (f *fakeLevels) Levels(_ context.Context, ids []string) ([]Update, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Update
	for _, id := range ids {
		if u, ok := f.m[id]; ok {
			out = append(out, u)
		}
	}
	return out, nil
}

func next(t *testing.T, s *Subscriber) []Update {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	frames, err := s.Next(ctx)
	if err != nil {
		t.Fatalf("Next: %v", err)
	}
	out := make([]Update, len(frames))
	for i, f := range frames {
		out[i] = f.Update
	}
	return out
}

func TestHub_SnapshotThenChanges(t *testing.T) {
	levels := &fakeLevels{m: map[string]Update{"a": {ItemID: "a", Available: 10, Version: 3}}}
	h := NewHub(levels)
	s := h.NewSubscriber(10)
	defer h.Close(s)
	unknown, err := h.Subscribe(context.Background(), s, []string{"a", "nope"})
	if err != nil || len(unknown) != 1 || unknown[0] != "nope" {
		t.Fatalf("Subscribe = %v, %v; want nope unknown", unknown, err)
	}
	if got := next(t, s); len(got) != 1 || got[0].Version != 3 || got[0].Available != 10 {
		t.Fatalf("snapshot = %+v", got)
	}
	if err := h.Publish(Update{ItemID: "a", Available: 9, Sold: 1, Version: 4}); err != nil {
		t.Fatal(err)
	}
	if got := next(t, s); len(got) != 1 || got[0].Version != 4 {
		t.Fatalf("change = %+v", got)
	}
	if s.Len() != 1 {
		t.Fatalf("watching %d items, want only the known one", s.Len())
	}
}

func TestHub_SlowSubscriberGetsOnlyTheNewestLevel(t *testing.T) {
	h := NewHub(&fakeLevels{m: map[string]Update{"a": {ItemID: "a", Available: 100, Version: 1}}})
	slow := h.NewSubscriber(10)
	defer h.Close(slow)
	if _, err := h.Subscribe(context.Background(), slow, []string{"a"}); err != nil {
		t.Fatal(err)
	}
	for v := int64(2); v <= 50; v++ {
		if err := h.Publish(Update{ItemID: "a", Available: int32(101 - v), Version: v}); err != nil {
			t.Fatal(err)
		}
	}
	got := next(t, slow)
	if len(got) != 1 || got[0].Version != 50 {
		t.Fatalf("slow subscriber got %+v, want only version 50", got)
	}
	if st := h.Stats(); st.Conflated != 49 {
		t.Fatalf("conflated = %d, want 49 (the snapshot and 48 changes replaced)", st.Conflated)
	}
}

func TestHub_OldAndRepeatedVersionsAreDropped(t *testing.T) {
	h := NewHub(&fakeLevels{m: map[string]Update{"a": {ItemID: "a", Version: 5}}})
	s := h.NewSubscriber(10)
	defer h.Close(s)
	if _, err := h.Subscribe(context.Background(), s, []string{"a"}); err != nil {
		t.Fatal(err)
	}
	next(t, s)
	for _, v := range []int64{5, 4, 6, 6} {
		_ = h.Publish(Update{ItemID: "a", Version: v})
	}
	if got := next(t, s); len(got) != 1 || got[0].Version != 6 {
		t.Fatalf("got %+v, want version 6 once", got)
	}
	if s.Pending() != 0 {
		t.Fatalf("a repeated version was queued again")
	}
}

func TestHub_PublishNeverWaitsForAStuckSubscriber(t *testing.T) {
	h := NewHub(&fakeLevels{m: map[string]Update{"a": {ItemID: "a", Version: 1}}})
	stuck := h.NewSubscriber(10) // nobody ever calls Next
	defer h.Close(stuck)
	if _, err := h.Subscribe(context.Background(), stuck, []string{"a"}); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for v := int64(2); v < 100_000; v++ {
			_ = h.Publish(Update{ItemID: "a", Version: v})
		}
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("publishing to a subscriber that never reads blocked")
	}
	if stuck.Pending() != 1 {
		t.Fatalf("a stuck subscriber holds %d frames, want 1 (memory stays flat)", stuck.Pending())
	}
}

func TestHub_SubscriptionBoundAndClose(t *testing.T) {
	m := map[string]Update{}
	for i := range 5 {
		id := fmt.Sprint(i)
		m[id] = Update{ItemID: id, Version: 1}
	}
	h := NewHub(&fakeLevels{m: m})
	s := h.NewSubscriber(3)
	if _, err := h.Subscribe(context.Background(), s, []string{"0", "1", "2", "3"}); !errors.Is(err, ErrTooManySubscriptions) {
		t.Fatalf("four subscriptions with a bound of three: %v", err)
	}
	if _, err := h.Subscribe(context.Background(), s, []string{"0", "1", "2"}); err != nil {
		t.Fatal(err)
	}
	h.Unsubscribe(s, []string{"1"})
	if _, err := h.Subscribe(context.Background(), s, []string{"4"}); err != nil {
		t.Fatalf("subscribing after an unsubscribe: %v", err)
	}
	h.Close(s)
	if _, err := s.Next(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Next after Close: %v", err)
	}
	if len(h.Topics()) != 0 || h.Stats().Subscribers != 0 {
		t.Fatalf("topics left after the last subscriber closed: %v", h.Topics())
	}
}

func TestHub_SnapshotReadErrorsReachTheCaller(t *testing.T) {
	levels := NewMockLevels(gomock.NewController(t))
	levels.EXPECT().Levels(gomock.Any(), []string{"a"}).Return(nil, errors.New("database down"))
	h := NewHub(levels)
	s := h.NewSubscriber(10)
	defer h.Close(s)
	if _, err := h.Subscribe(context.Background(), s, []string{"a"}); err == nil {
		t.Fatal("a failed snapshot read was swallowed")
	}
	if len(h.Topics()) != 0 || s.Len() != 0 {
		t.Fatal("a failed subscription left state behind")
	}
}

func TestHub_ManyPublishersManySubscribersSeeTheFinalLevel(t *testing.T) {
	levels := &fakeLevels{m: map[string]Update{}}
	items := []string{"a", "b", "c", "d"}
	for _, id := range items {
		levels.m[id] = Update{ItemID: id, Version: 1}
	}
	h := NewHub(levels)
	subs := make([]*Subscriber, 50)
	for i := range subs {
		subs[i] = h.NewSubscriber(10)
		if _, err := h.Subscribe(context.Background(), subs[i], items); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for _, id := range items {
		wg.Go(func() {
			for v := int64(2); v <= 500; v++ {
				_ = h.Publish(Update{ItemID: id, Version: v, Sold: int32(v)})
			}
		})
	}
	seen := make([]map[string]int64, len(subs))
	for i, s := range subs {
		seen[i] = map[string]int64{}
		wg.Go(func() {
			for {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				frames, err := s.Next(ctx)
				cancel()
				if err != nil {
					return
				}
				for _, f := range frames {
					if f.Update.Version <= seen[i][f.Update.ItemID] {
						t.Errorf("subscriber %d saw %s go back from %d to %d", i, f.Update.ItemID, seen[i][f.Update.ItemID], f.Update.Version)
					}
					seen[i][f.Update.ItemID] = f.Update.Version
				}
				done := true
				for _, id := range items {
					done = done && seen[i][id] == 500
				}
				if done {
					return
				}
			}
		})
	}
	wg.Wait()
	for i := range subs {
		for _, id := range items {
			if seen[i][id] != 500 {
				t.Fatalf("subscriber %d ended at version %d of %s, want 500", i, seen[i][id], id)
			}
		}
		h.Close(subs[i])
	}
}

func TestEncode_BothFormatsDecodeToTheSameMessage(t *testing.T) {
	u := Update{ItemID: "a", Available: 0, Reserved: 2, Sold: 3, Version: 9}
	f, err := Encode(u)
	if err != nil {
		t.Fatal(err)
	}
	var fromJSON, fromProto stockguardv1.StockUpdate
	if err := protojson.Unmarshal(f.JSON, &fromJSON); err != nil {
		t.Fatal(err)
	}
	if err := proto.Unmarshal(f.Proto, &fromProto); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(&fromJSON, u.Message()) || !proto.Equal(&fromProto, u.Message()) {
		t.Fatalf("decoded %v and %v, want %v", &fromJSON, &fromProto, u.Message())
	}
	if !strings.Contains(string(f.JSON), `"available":0`) {
		t.Fatalf("JSON frame %s omits zero stock", f.JSON)
	}
}
