package broadcast

import (
	"context"
	"errors"
	"hash/maphash"
	"sync"
	"sync/atomic"
)

//go:generate go tool mockgen -typed -destination=mock_levels_test.go -package=broadcast . Levels

// Levels reads the current stock level of items. The hub uses it for the
// snapshot a new subscriber gets, and to resync after a lost feed.
type Levels interface {
	// Levels returns the levels of the ids that exist; unknown ids are left out.
	Levels(ctx context.Context, ids []string) ([]Update, error)
}

const shardCount = 64

// Errors a subscription can meet.
var (
	ErrTooManySubscriptions = errors.New("too many subscriptions on this connection")
	ErrClosed               = errors.New("subscriber closed")
)

// Stats are running totals of the hub's work.
type Stats struct {
	Published   uint64 // updates accepted by Publish
	Delivered   uint64 // frames handed to subscribers' writers
	Conflated   uint64 // frames replaced by a newer one before they were written
	Stale       uint64 // frames dropped because the subscriber already had a newer version
	Subscribers int64  // open subscribers
}

// Hub routes updates to the subscribers of each item. Publish takes one
// shard's read lock and touches each subscriber for a moment under its own
// mutex; no publish ever waits for a subscriber's socket.
type Hub struct {
	levels Levels
	seed   maphash.Seed
	shards [shardCount]shard

	published, delivered, conflated, stale atomic.Uint64
	subscribers                            atomic.Int64
}

type shard struct {
	mu     sync.RWMutex
	topics map[string]*topic
}

type topic struct {
	latest *Frame
	subs   map[*Subscriber]struct{}
}

// NewHub returns a hub that reads snapshots through levels.
func NewHub(levels Levels) *Hub {
	h := &Hub{levels: levels, seed: maphash.MakeSeed()}
	for i := range h.shards {
		h.shards[i].topics = map[string]*topic{}
	}
	return h
}

func (h *Hub) shard(itemID string) *shard {
	return &h.shards[maphash.String(h.seed, itemID)%shardCount]
}

// Publish sends u to every subscriber of its item. Updates older than one
// already published for the item are dropped, so out-of-order and repeated
// feeds are harmless.
func (h *Hub) Publish(u Update) error {
	if !h.Watched(u.ItemID) {
		// Nothing to encode for: PublishFrame would drop the frame too.
		h.published.Add(1)
		return nil
	}
	f, err := Encode(u)
	if err != nil {
		return err
	}
	h.PublishFrame(f)
	return nil
}

// Watched reports whether anyone subscribes to the item. Publishers use it
// to skip work, such as a trace span, for a change nobody will receive.
func (h *Hub) Watched(itemID string) bool {
	s := h.shard(itemID)
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.topics[itemID] != nil
}

// PublishFrame is Publish for an already encoded frame.
func (h *Hub) PublishFrame(f *Frame) {
	h.published.Add(1)
	s := h.shard(f.Update.ItemID)
	s.mu.Lock()
	t := s.topics[f.Update.ItemID]
	if t == nil || (t.latest != nil && t.latest.Update.Version >= f.Update.Version) {
		s.mu.Unlock()
		return
	}
	t.latest = f
	s.mu.Unlock()

	s.mu.RLock()
	defer s.mu.RUnlock()
	for sub := range t.subs {
		h.offer(sub, f)
	}
}

func (h *Hub) offer(sub *Subscriber, f *Frame) {
	switch sub.offer(f) {
	case offerConflated:
		h.conflated.Add(1)
	case offerStale:
		h.stale.Add(1)
	}
}

// Topics returns the ids of items that have subscribers.
func (h *Hub) Topics() []string {
	var out []string
	for i := range h.shards {
		s := &h.shards[i]
		s.mu.RLock()
		for id := range s.topics {
			out = append(out, id)
		}
		s.mu.RUnlock()
	}
	return out
}

// Resync reads the current level of every watched item and publishes it.
// Feeds call it after they may have missed changes (a dropped LISTEN
// connection), so that every watcher converges.
func (h *Hub) Resync(ctx context.Context) error {
	ids := h.Topics()
	if len(ids) == 0 {
		return nil
	}
	ups, err := h.levels.Levels(ctx, ids)
	if err != nil {
		return err
	}
	for _, u := range ups {
		if err := h.Publish(u); err != nil {
			return err
		}
	}
	return nil
}

// TopicCount is how many items have watchers.
func (h *Hub) TopicCount() int {
	n := 0
	for i := range h.shards {
		s := &h.shards[i]
		s.mu.RLock()
		n += len(s.topics)
		s.mu.RUnlock()
	}
	return n
}

// Stats returns the running totals.
func (h *Hub) Stats() Stats {
	return Stats{
		Published: h.published.Load(), Delivered: h.delivered.Load(),
		Conflated: h.conflated.Load(), Stale: h.stale.Load(), Subscribers: h.subscribers.Load(),
	}
}

// NewSubscriber returns a subscriber allowed up to maxItems subscriptions,
// whose writer waits on Ready or Next. Close it when its connection ends.
func (h *Hub) NewSubscriber(maxItems int) *Subscriber {
	return h.NewNotifiedSubscriber(maxItems, nil)
}

// NewNotifiedSubscriber is NewSubscriber for writers that have no goroutine
// of their own: notify is called (from the publisher, so it must not block)
// whenever frames become pending or the subscriber closes.
func (h *Hub) NewNotifiedSubscriber(maxItems int, notify func()) *Subscriber {
	h.subscribers.Add(1)
	return &Subscriber{hub: h, maxItems: maxItems, ready: make(chan struct{}, 1), notify: notify}
}

// Subscribe adds ids to sub and queues a snapshot of each. It returns the
// ids that name no item; those are not subscribed.
func (h *Hub) Subscribe(ctx context.Context, sub *Subscriber, ids []string) (unknown []string, err error) {
	ids = sub.newIDs(ids)
	if len(ids) == 0 {
		return nil, nil
	}
	if err := sub.reserve(ids); err != nil {
		return nil, err
	}
	// Join the topics first, so no change published from now on is missed,
	// then offer the snapshot; the version check orders the two. A topic
	// that already has a latest frame answers from it; the rest are read.
	var toRead []string
	for _, id := range ids {
		s := h.shard(id)
		s.mu.Lock()
		t := s.topics[id]
		if t == nil {
			t = &topic{subs: map[*Subscriber]struct{}{}}
			s.topics[id] = t
		}
		t.subs[sub] = struct{}{}
		latest := t.latest
		s.mu.Unlock()
		if latest != nil {
			h.offer(sub, latest)
		} else {
			toRead = append(toRead, id)
		}
	}
	if len(toRead) == 0 {
		return nil, nil
	}
	ups, err := h.levels.Levels(ctx, toRead)
	if err != nil {
		h.Unsubscribe(sub, ids)
		return nil, err
	}
	found := make(map[string]bool, len(ups))
	for _, u := range ups {
		found[u.ItemID] = true
		f, err := Encode(u)
		if err != nil {
			return nil, err
		}
		h.remember(f)
		h.offer(sub, f)
	}
	for _, id := range toRead {
		if !found[id] {
			unknown = append(unknown, id)
		}
	}
	if len(unknown) > 0 {
		h.Unsubscribe(sub, unknown)
	}
	return unknown, nil
}

// remember makes a snapshot the topic's latest frame when it is newer, so the
// next subscriber can be answered without it being published again.
func (h *Hub) remember(f *Frame) {
	s := h.shard(f.Update.ItemID)
	s.mu.Lock()
	if t := s.topics[f.Update.ItemID]; t != nil && (t.latest == nil || t.latest.Update.Version < f.Update.Version) {
		t.latest = f
	}
	s.mu.Unlock()
}

// Unsubscribe removes ids from sub.
func (h *Hub) Unsubscribe(sub *Subscriber, ids []string) {
	for _, id := range ids {
		s := h.shard(id)
		s.mu.Lock()
		if t := s.topics[id]; t != nil {
			delete(t.subs, sub)
			if len(t.subs) == 0 {
				delete(s.topics, id)
			}
		}
		s.mu.Unlock()
	}
	sub.forget(ids)
}

// Close unsubscribes sub from everything and wakes its writer, which then
// sees ErrClosed.
func (h *Hub) Close(sub *Subscriber) {
	if !sub.close() {
		return
	}
	h.Unsubscribe(sub, sub.ids())
	h.subscribers.Add(-1)
}
