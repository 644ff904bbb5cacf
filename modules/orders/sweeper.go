package orders

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// SweeperConfig sets how often overdue holds are expired and how many at a time.
type SweeperConfig struct {
	Interval  time.Duration
	BatchSize int
}

// Sweeper expires overdue holds in the background. Start launches its one
// goroutine; Stop ends it and waits for it.
type Sweeper struct {
	store Store
	cfg   SweeperConfig
	log   *zap.Logger
	now   func() time.Time

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}

	expired atomic.Uint64 // holds expired, in total
	lastRun atomic.Int64  // unix nanoseconds of the last completed sweep
}

// Expired is how many holds the sweeper has expired since it was made.
func (s *Sweeper) Expired() uint64 { return s.expired.Load() }

// LastRun is when the last sweep finished (zero before the first).
func (s *Sweeper) LastRun() time.Time {
	if n := s.lastRun.Load(); n > 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}

// NewSweeper returns a stopped Sweeper.
func NewSweeper(store Store, cfg SweeperConfig, log *zap.Logger) *Sweeper {
	return &Sweeper{store: store, cfg: cfg, log: log.Named("sweeper"), now: time.Now}
}

// Start launches the sweep loop. It is a no-op when already started.
func (s *Sweeper) Start() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cancel != nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel, s.done = cancel, make(chan struct{})
	go s.loop(ctx, s.done)
}

// Stop ends the sweep loop and waits for it, or for ctx.
func (s *Sweeper) Stop(ctx context.Context) error {
	s.mu.Lock()
	cancel, done := s.cancel, s.done
	s.cancel, s.done = nil, nil
	s.mu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Sweeper) loop(ctx context.Context, done chan struct{}) {
	defer close(done)
	t := time.NewTicker(s.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.Sweep(ctx)
		}
	}
}

// Sweep expires overdue holds, batch by batch, until none is left or ctx
// ends. It returns how many it expired.
func (s *Sweeper) Sweep(ctx context.Context) int {
	total := 0
	for ctx.Err() == nil {
		n, err := s.store.ExpireHolds(ctx, s.now().UTC(), s.cfg.BatchSize)
		total += n
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("expiring holds failed; will retry next tick", zap.Error(err))
			}
			break
		}
		if n < s.cfg.BatchSize {
			break
		}
	}
	s.expired.Add(uint64(total))
	s.lastRun.Store(s.now().UnixNano())
	if total > 0 {
		s.log.Info("expired holds", zap.Int("count", total))
	}
	return total
}
