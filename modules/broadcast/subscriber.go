package broadcast

import (
	"context"
	"slices"
	"strings"
	"sync"
)

// Subscriber is one watcher's mailbox: at most one pending frame per item.
// Publishers overwrite older pending frames (conflation) and never wait;
// the watcher's writer drains it with Next or TryNext.
//
// A watcher follows at most a few dozen items, so its state is kept in
// small slices rather than maps: less memory per idle connection, and a
// linear scan of a few entries is as fast as hashing.
type Subscriber struct {
	hub      *Hub
	maxItems int
	ready    chan struct{} // capacity 1: "pending is not empty"
	notify   func()        // if set, called instead of signalling ready

	mu      sync.Mutex
	closed  bool
	items   []watched // subscribed items with the newest version queued or sent
	pending []*Frame  // at most one per item
}

type watched struct {
	id      string
	version int64
}

type offerResult int

const (
	offerQueued offerResult = iota
	offerConflated
	offerStale
)

func (s *Subscriber) find(id string) int {
	for i := range s.items {
		if s.items[i].id == id {
			return i
		}
	}
	return -1
}

func (s *Subscriber) offer(f *Frame) offerResult {
	id, v := f.Update.ItemID, f.Update.Version
	s.mu.Lock()
	i := s.find(id)
	if s.closed || i < 0 || v <= s.items[i].version {
		s.mu.Unlock()
		return offerStale
	}
	s.items[i].version = v
	replaced := false
	for j, p := range s.pending {
		if p.Update.ItemID == id {
			s.pending[j], replaced = f, true
			break
		}
	}
	if !replaced {
		s.pending = append(s.pending, f)
	}
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
	out := s.pending
	s.pending = nil
	s.mu.Unlock()
	if len(out) == 0 {
		return nil, nil
	}
	if len(out) > 1 {
		slices.SortFunc(out, func(a, b *Frame) int { return strings.Compare(a.Update.ItemID, b.Update.ItemID) })
	}
	s.hub.delivered.Add(uint64(len(out)))
	return out, nil
}

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
	var out []string
	for _, id := range ids {
		if s.find(id) >= 0 || slices.Contains(out, id) {
			continue
		}
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
		s.items = append(s.items, watched{id: id})
	}
	return nil
}

func (s *Subscriber) forget(ids []string) {
	s.mu.Lock()
	s.items = slices.DeleteFunc(s.items, func(w watched) bool { return slices.Contains(ids, w.id) })
	s.pending = slices.DeleteFunc(s.pending, func(f *Frame) bool { return slices.Contains(ids, f.Update.ItemID) })
	s.mu.Unlock()
}

func (s *Subscriber) ids() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, len(s.items))
	for i, w := range s.items {
		out[i] = w.id
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
