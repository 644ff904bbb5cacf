package orders

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// ErrOverloaded means the item's purchase queue is full: the request was
// shed at once, changed nothing, and may be retried after a short pause.
var ErrOverloaded = errors.New("too many purchases of this item in flight; retry shortly")

// CoalescerConfig bounds the coalescer.
type CoalescerConfig struct {
	// Lanes spreads items over this many queues, each with its own worker
	// and transactions; a lane's batch may hold orders of many items.
	// Zero means one lane per item.
	Lanes     int
	MaxBatch  int           // orders committed together, at most
	QueueSize int           // orders waiting per item, at most; more are shed
	IdleAfter time.Duration // a worker with nothing to do for this long exits
	Timeout   time.Duration // bound on one batch's transaction
}

// Coalescer turns a crowd of single-item purchases into a few
// transactions. Purchases queue by lane (an item always maps to the same
// lane, so its purchases keep their arrival order); the lane's worker takes
// everything queued so far (up to MaxBatch) and places it with one
// Store.PlaceBatch, in arrival order, then answers each caller. A lone
// purchase is placed at once; an idle lane holds no goroutine. Purchases of
// an item that another transaction holds locked wait in their lane without
// holding up the others (see busyPause).
type Coalescer struct {
	store Store
	cfg   CoalescerConfig

	seed    maphash.Seed
	mu      sync.Mutex
	workers map[string]*itemQueue // by lane
	stopped bool
	wg      sync.WaitGroup

	onBatch func(size int)
	shed    atomic.Uint64
	busy    atomic.Uint64
	queued  atomic.Int64
	held    atomic.Int64
}

type itemQueue struct {
	ch chan *placement
}

type placement struct {
	ctx    context.Context
	item   string // the order's one item
	order  Order
	result chan BatchResult // capacity 1
	busy   int              // batches that left it out because its item was locked
	seq    uint64           // arrival order in its lane, from when the worker took it
}

// A purchase whose item another transaction holds locked is left out of
// its batch (ErrItemBusy) and goes first into the lane's next batch, after
// a pause of busyPause, doubled each time, unless new purchases come first.
// After maxBusy such tries the item's purchases are placed one by one with
// a lock that waits, beside the lane (which goes on with other items), so a
// row that is locked again and again cannot starve them.
const (
	busyPause = time.Millisecond
	maxBusy   = 3
)

// NewCoalescer returns a coalescer over store.
func NewCoalescer(store Store, cfg CoalescerConfig) *Coalescer {
	if cfg.MaxBatch < 1 {
		cfg.MaxBatch = 1
	}
	if cfg.QueueSize < 1 {
		cfg.QueueSize = 1
	}
	if cfg.IdleAfter <= 0 {
		cfg.IdleAfter = time.Second
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	return &Coalescer{store: store, cfg: cfg, seed: maphash.MakeSeed(), workers: map[string]*itemQueue{}}
}

// OnBatch registers fn to hear the size of every batch placed. Call it
// before use.
func (c *Coalescer) OnBatch(fn func(size int)) { c.onBatch = fn }

// Shed is how many purchases were refused because a queue was full.
func (c *Coalescer) Shed() uint64 { return c.shed.Load() }

// Busy is how many times a batch left a purchase out because another
// transaction held its item locked.
func (c *Coalescer) Busy() uint64 { return c.busy.Load() }

// Held is how many purchases left their queue but wait for a busy item:
// to be tried again, or to follow purchases placed beside their lane.
func (c *Coalescer) Held() int64 { return c.held.Load() }

// QueueDepth is how many purchases wait in all queues.
func (c *Coalescer) QueueDepth() int64 { return c.queued.Load() }

// Workers is how many items have a worker now.
func (c *Coalescer) Workers() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.workers)
}

// Place queues o, an order of one item, and waits for its outcome. If ctx
// ends first, Place returns ctx's error; an order already taken into a
// batch may still be placed (a retry with the same idempotency key finds it).
func (c *Coalescer) Place(ctx context.Context, itemID string, o Order) (Order, bool, error) {
	p := &placement{ctx: ctx, item: itemID, order: o, result: make(chan BatchResult, 1)}
	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		return Order{}, false, ErrUnavailable
	}
	lane := c.lane(itemID)
	q := c.workers[lane]
	if q == nil {
		q = &itemQueue{ch: make(chan *placement, c.cfg.QueueSize)}
		c.workers[lane] = q
		c.wg.Add(1)
		go c.work(lane, q)
	}
	select {
	case q.ch <- p:
		c.queued.Add(1)
	default:
		c.mu.Unlock()
		c.shed.Add(1)
		return Order{}, false, ErrOverloaded
	}
	c.mu.Unlock()
	select {
	case r := <-p.result:
		if r.Err == context.DeadlineExceeded { //nolint:errorlint // the sentinel place sends, never wrapped
			// ctx's deadline has passed, but its own timer may not have
			// fired yet; wait for it so ctx.Err() agrees with the answer.
			<-ctx.Done()
			return Order{}, false, ctx.Err()
		}
		return r.Order, r.Replayed, r.Err
	case <-ctx.Done():
		return Order{}, false, ctx.Err()
	}
}

// lane maps an item to its queue.
func (c *Coalescer) lane(itemID string) string {
	if c.cfg.Lanes <= 0 {
		return itemID
	}
	return strconv.FormatUint(maphash.String(c.seed, itemID)%uint64(c.cfg.Lanes), 10)
}

// work places batches for one lane until the lane goes idle.
func (c *Coalescer) work(lane string, q *itemQueue) {
	defer c.wg.Done()
	idle := time.NewTimer(c.cfg.IdleAfter)
	defer idle.Stop()
	l := &laneState{waiting: map[string]bool{}, done: make(chan string)}
	for {
		// taken counts the purchases this round takes from the queue; they
		// leave QueueDepth together, once the batch is drained, so a
		// caller that sees the queue empty knows they are all in the batch.
		taken := 0
		if next := l.oldestReady(); next == nil || next.busy > 0 {
			var in <-chan *placement // nil: the carry is full, take nothing new
			if len(l.carry) < c.cfg.QueueSize {
				in = q.ch
			}
			var wake, idleC <-chan time.Time
			var pause *time.Timer
			if next != nil {
				pause = time.NewTimer(busyPause << (next.busy - 1))
				wake = pause.C
			} else if len(l.carry) == 0 && len(l.waiting) == 0 {
				idleC = idle.C
			}
			stop := func() {
				if pause != nil {
					pause.Stop()
				}
			}
			select {
			case p := <-in:
				stop()
				l.admit(p)
				l.carry = append(l.carry, p)
				taken = 1
			case item := <-l.done:
				stop()
				delete(l.waiting, item)
				continue
			case <-wake:
			case <-idleC:
				if c.retire(lane, q) {
					return
				}
				idle.Reset(c.cfg.IdleAfter)
				continue
			}
		}
		// Carried purchases arrived before anything still queued, so they
		// go first: each item's purchases stay in arrival order.
		c.held.Add(-int64(len(l.carry) - taken))
		batch, rest := l.split(c.cfg.MaxBatch)
	drain:
		for len(batch) < c.cfg.MaxBatch && len(rest) < c.cfg.QueueSize {
			select {
			case p := <-q.ch:
				taken++
				l.admit(p)
				if l.waiting[p.item] {
					rest = append(rest, p)
				} else {
					batch = append(batch, p)
				}
			default:
				break drain
			}
		}
		c.queued.Add(-int64(taken))
		busy := c.place(batch, l)
		l.carry = mergeBySeq(rest, busy)
		c.held.Add(int64(len(l.carry)))
		clear(batch) // let answered purchases go
		l.batch = batch[:0]
		idle.Reset(c.cfg.IdleAfter)
	}
}

// laneState is what a lane's worker keeps between batches.
type laneState struct {
	// carry holds purchases not placed yet that left the queue: left out of
	// a batch (item busy), or of an item in waiting. In arrival order; at
	// most QueueSize, beyond which the worker takes nothing new and the
	// queue sheds.
	carry []*placement
	// waiting holds the items whose purchases are being placed one by one
	// beside the lane; their newer purchases wait in carry until done
	// sends the item.
	waiting map[string]bool
	done    chan string
	seq     uint64       // the last seq given
	batch   []*placement // reused for every batch
}

// admit gives p, just taken from the queue, its place in arrival order.
func (l *laneState) admit(p *placement) {
	l.seq++
	p.seq = l.seq
}

// oldestReady is the first carried purchase that the next batch may hold,
// or nil.
func (l *laneState) oldestReady() *placement {
	for _, p := range l.carry {
		if !l.waiting[p.item] {
			return p
		}
	}
	return nil
}

// split takes the carry apart: up to limit of the purchases the next batch
// may hold, oldest first, and the rest, each in arrival order.
func (l *laneState) split(limit int) (batch, rest []*placement) {
	batch = l.batch[:0]
	for _, p := range l.carry {
		if len(batch) < limit && !l.waiting[p.item] {
			batch = append(batch, p)
		} else {
			rest = append(rest, p)
		}
	}
	l.carry = nil
	return batch, rest
}

// mergeBySeq merges two lists sorted by arrival into one. A batch that was
// full left newer purchases of its items in rest; the batch's busy ones
// must go back ahead of them.
func mergeBySeq(a, b []*placement) []*placement {
	if len(b) == 0 {
		return a
	}
	out := make([]*placement, 0, len(a)+len(b))
	for len(a) > 0 && len(b) > 0 {
		if a[0].seq < b[0].seq {
			out, a = append(out, a[0]), a[1:]
		} else {
			out, b = append(out, b[0]), b[1:]
		}
	}
	return append(append(out, a...), b...)
}

// retire ends the lane's worker if nothing is queued, and reports whether
// it did.
func (c *Coalescer) retire(lane string, q *itemQueue) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(q.ch) > 0 {
		return false
	}
	// No one can send to q after this: Place finds no worker for the lane
	// and starts a new one.
	delete(c.workers, lane)
	return true
}

// place places batch and answers its callers, except those left out
// because their item was busy: it returns them, in order; or, for an item
// busy maxBusy times, places them beside the lane (see placeWaiting).
func (c *Coalescer) place(batch []*placement, l *laneState) (carry []*placement) {
	live := batch[:0:0]
	orders := make([]Order, 0, len(batch))
	for _, p := range batch {
		if err := p.ctx.Err(); err != nil {
			p.result <- BatchResult{Err: err} // the caller gave up before its turn
			continue
		}
		live = append(live, p)
		orders = append(orders, p.order)
	}
	if len(live) == 0 {
		return nil
	}
	if c.onBatch != nil {
		c.onBatch(len(live))
	}
	// The batch runs in the first caller's context (so its trace shows the
	// SQL) without its cancellation, until the last caller's deadline (at
	// most Timeout): when every caller has given up, the database work stops.
	deadline := time.Now().Add(c.cfg.Timeout)
	latest := time.Time{}
	for _, p := range live {
		d, ok := p.ctx.Deadline()
		if !ok {
			latest = deadline
			break
		}
		if d.After(latest) {
			latest = d
		}
	}
	if latest.Before(deadline) {
		deadline = latest
	}
	ctx, cancel := context.WithDeadline(context.WithoutCancel(live[0].ctx), deadline)
	defer cancel()
	results, err := c.store.PlaceBatch(ctx, orders, func(i int) bool { return live[i].ctx.Err() == nil })
	timedOut := err != nil && ctx.Err() != nil
	var alone map[string][]*placement // by item, in arrival order
	for i, p := range live {
		switch {
		case timedOut && outlived(p.ctx, deadline):
			// The batch stopped at this caller's own deadline.
			p.result <- BatchResult{Err: context.DeadlineExceeded}
		case timedOut:
			// The batch bound (or an earlier caller's deadline) stopped it
			// while this caller still had time: the store was too slow.
			p.result <- BatchResult{Err: fmt.Errorf("%w: batch stopped at its deadline: %w", ErrUnavailable, err)}
		case err != nil:
			p.result <- BatchResult{Err: err}
		case errors.Is(results[i].Err, ErrItemBusy):
			c.busy.Add(1)
			p.busy++
			// The item's oldest purchase decides for all of them.
			if _, ok := alone[p.item]; ok || p.busy >= maxBusy {
				if alone == nil {
					alone = map[string][]*placement{}
				}
				alone[p.item] = append(alone[p.item], p)
			} else {
				carry = append(carry, p)
			}
		default:
			p.result <- results[i]
		}
	}
	for item, list := range alone {
		l.waiting[item] = true
		c.wg.Add(1)
		go c.placeWaiting(item, list, l.done)
	}
	return carry
}

// placeWaiting places the purchases of one item one by one, in order, each
// with a lock that waits, then sends the item on done. Until then the lane
// holds the item's newer purchases back, so they stay behind these.
func (c *Coalescer) placeWaiting(item string, list []*placement, done chan<- string) {
	defer c.wg.Done()
	for _, p := range list {
		placed, replayed, err := Order{}, false, p.ctx.Err()
		if err == nil {
			placed, replayed, err = c.store.PlaceOrder(p.ctx, p.order)
		}
		if err != nil && p.ctx.Err() != nil {
			err = p.ctx.Err() // the caller's own deadline or cancellation, as Place expects
		}
		p.result <- BatchResult{Order: placed, Replayed: replayed, Err: err}
	}
	done <- item
}

// outlived reports whether ctx's deadline is no later than t: the batch
// stopped because this caller's time was up.
func outlived(ctx context.Context, t time.Time) bool {
	d, ok := ctx.Deadline()
	return ok && !d.After(t)
}

// Stop refuses new purchases and waits for the queued ones to be placed
// and every worker to exit, or for ctx.
func (c *Coalescer) Stop(ctx context.Context) error {
	c.mu.Lock()
	c.stopped = true
	c.mu.Unlock()
	done := make(chan struct{})
	go func() { c.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
