package broadcast

import (
	"context"
	"sort"
	"sync"
)

// Subscriber is one watcher's mailbox: at most one pending frame per item.
// Publishers overwrite older pending frames (conflation) and never wait;
// the watcher's writer drains it with Next.
type Subscriber struct {
	hub      *Hub
	maxItems int
	ready    chan struct{} // capacity 1: "pending is not empty"
	notify   func()        // if set, called instead of signalling ready

	mu      sync.Mutex
	closed  bool
	items   map[string]int64 // subscribed ids -> newest version queued or sent
	pending map[string]*Frame
}

type offerResult int

const (
	offerQueued offerResult = iota
	offerConflated
	offerStale
)

func (s *Subscriber) offer(f *Frame) offerResult {
	id, v := f.Update.ItemID, f.Update.Version
	s.mu.Lock()
	last, subscribed := s.items[id]
	if s.closed || !subscribed || v <= last {
		s.mu.Unlock()
		return offerStale
	}
	s.items[id] = v
	_, replaced := s.pending[id]
	s.pending[id] = f
	s.mu.Unlock()
	s.signal()
	if replaced {
		return offerConflated
	}
	return offerQueued
}

// Next waits until frames are pending and returns them all, ordered by
// item id, or ErrClosed once the subscriber is closed, or ctx's error.
func (s *Subscriber) Next(ctx context.Context) ([]*Frame, error) {
	for {
		frames, err := s.TryNext()
		if err != nil || frames != nil {
			return frames, err
		}
		select {
		case <-s.ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// TryNext returns the pending frames without waiting (nil when none), or
// ErrClosed once the subscriber is closed.
func (s *Subscriber) TryNext() ([]*Frame, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrClosed
	}
	if len(s.pending) == 0 {
		s.mu.Unlock()
		return nil, nil
	}
	out := make([]*Frame, 0, len(s.pending))
	for _, f := range s.pending {
		out = append(out, f)
	}
	clear(s.pending)
	s.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Update.ItemID < out[j].Update.ItemID })
	s.hub.delivered.Add(uint64(len(out)))
	return out, nil
}

// Ready is signalled when frames may be pending; use it to wait in a
// select with other events, then call Next.
func (s *Subscriber) Ready() <-chan struct{} { return s.ready }

// Pending says how many frames wait to be written.
func (s *Subscriber) Pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pending)
}

// Len is how many items the subscriber watches.
func (s *Subscriber) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.items)
}

func (s *Subscriber) newIDs(ids []string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := map[string]bool{}
	var out []string
	for _, id := range ids {
		if _, ok := s.items[id]; ok || seen[id] {
			continue
		}
		seen[id] = true
		out = append(out, id)
	}
	return out
}

// reserve marks ids subscribed (at version 0, so any real version is newer)
// before they join their topics, within the subscription bound.
func (s *Subscriber) reserve(ids []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if len(s.items)+len(ids) > s.maxItems {
		return ErrTooManySubscriptions
	}
	for _, id := range ids {
		s.items[id] = 0
	}
	return nil
}

func (s *Subscriber) forget(ids []string) {
	s.mu.Lock()
	for _, id := range ids {
		delete(s.items, id)
		delete(s.pending, id)
	}
	s.mu.Unlock()
}

func (s *Subscriber) ids() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.items))
	for id := range s.items {
		out = append(out, id)
	}
	return out
}

func (s *Subscriber) close() bool {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return false
	}
	s.closed = true
	s.mu.Unlock()
	s.signal()
	return true
}

// signal wakes the subscriber's writer. It never blocks.
func (s *Subscriber) signal() {
	if s.notify != nil {
		s.notify()
		return
	}
	select {
	case s.ready <- struct{}{}:
	default: // already signalled
	}
}
