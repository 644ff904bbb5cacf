// Package websocket serves live stock over WebSockets at GET /v1/ws with
// gorilla/websocket. An idle connection costs one goroutine, its reader
// (pongs and subscribe messages), and a few small structs: the HTTP handler
// returns right after the upgrade, writes are made by a fixed pool of
// writer goroutines woken by the hub, one pinger serves every connection,
// and write buffers come from a shared pool.
//
// It depends on the broadcast module; no module depends on it.
package websocket

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"
	"go.uber.org/zap"

	"github.com/stockguard/stockguard/modules/broadcast"
)

// Subprotocols a client may ask for. Binary protobuf frames for
// ProtoSubprotocol; protojson text frames otherwise.
const (
	ProtoSubprotocol = "stockguard.v1.proto"
	JSONSubprotocol  = "stockguard.v1.json"
)

// Close codes used on refusals, besides the standard ones gorilla sends
// (1009 for an oversized frame).
const (
	CloseGoingAway     = websocket.CloseGoingAway       // 1001: server shutting down
	ClosePolicy        = websocket.ClosePolicyViolation // 1008: bad message or too many subscriptions
	CloseTryAgainLater = websocket.CloseTryAgainLater   // 1013: too many connections
)

// Config bounds the endpoint.
type Config struct {
	Origins          []string      // browser origins allowed, shared with CORS
	MaxConnections   int           // open connections at once
	MaxSubscriptions int           // items per connection
	ReadLimit        int64         // largest client frame, bytes
	WriteTimeout     time.Duration // a write that takes longer evicts the client
	PingInterval     time.Duration
	PongTimeout      time.Duration // no pong (or message) for this long closes the connection
	Writers          int           // writer goroutines shared by every connection
}

// DefaultConfig is the configuration unless told otherwise.
func DefaultConfig() Config {
	return Config{MaxConnections: 20_000, MaxSubscriptions: 100, ReadLimit: 4096,
		WriteTimeout: 5 * time.Second, PingInterval: 25 * time.Second, PongTimeout: 60 * time.Second}
}

// Stats are running totals of the endpoint.
type Stats struct {
	Connections int64
	Refused     map[string]uint64 // by cause
	Evicted     map[string]uint64 // by cause
	Sent        uint64            // frames written
}

// Server is the /v1/ws handler.
type Server struct {
	hub      *broadcast.Hub
	cfg      Config
	log      *zap.Logger
	upgrader websocket.Upgrader
	queue    chan *wsConn // connections with something to write; each at most once

	open    atomic.Int64
	sent    atomic.Uint64
	mu      sync.Mutex
	conns   map[*wsConn]struct{}
	refused map[string]uint64
	evicted map[string]uint64
	closing bool
	stop    chan struct{}
	workers sync.WaitGroup
	gone    sync.WaitGroup // one per open connection, done when it is torn down
	lag     func(time.Duration)
}

// OnDelivered registers fn to hear, for every frame written, how long after
// its publication it reached the socket. Call it before serving.
func (s *Server) OnDelivered(fn func(lag time.Duration)) { s.lag = fn }

// NewServer returns the handler. Start its writers before serving.
func NewServer(hub *broadcast.Hub, cfg Config, log *zap.Logger) *Server {
	if cfg.Writers <= 0 {
		cfg.Writers = 32
	}
	s := &Server{hub: hub, cfg: cfg, log: log.Named("websocket"), stop: make(chan struct{}),
		queue: make(chan *wsConn, cfg.MaxConnections+cfg.Writers),
		conns: map[*wsConn]struct{}{}, refused: map[string]uint64{}, evicted: map[string]uint64{}}
	s.upgrader = websocket.Upgrader{
		HandshakeTimeout: 10 * time.Second,
		ReadBufferSize:   256, // client frames are small subscribe messages and pongs
		WriteBufferSize:  2048,
		WriteBufferPool:  &sync.Pool{},
		Subprotocols:     []string{ProtoSubprotocol, JSONSubprotocol},
		CheckOrigin:      s.checkOrigin,
	}
	return s
}

// Start launches the writer pool and the pinger.
func (s *Server) Start(context.Context) error {
	for range s.cfg.Writers {
		s.workers.Go(s.writer)
	}
	s.workers.Go(s.pinger)
	return nil
}

// checkOrigin allows clients that send no Origin (not browsers), same-origin
// pages, and the configured origins. Nothing else.
func (s *Server) checkOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil {
		return false
	}
	if strings.EqualFold(u.Host, r.Host) {
		return true
	}
	return slices.Contains(s.cfg.Origins, origin)
}

func (s *Server) count(m map[string]uint64, cause string) {
	s.mu.Lock()
	m[cause]++
	s.mu.Unlock()
}

// Stats returns the running totals.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{Connections: s.open.Load(), Sent: s.sent.Load(), Refused: map[string]uint64{}, Evicted: map[string]uint64{}}
	for k, v := range s.refused {
		st.Refused[k] = v
	}
	for k, v := range s.evicted {
		st.Evicted[k] = v
	}
	return st
}

// clientMessage is what a client may send.
type clientMessage struct {
	Subscribe   []string `json:"subscribe"`
	Unsubscribe []string `json:"unsubscribe"`
}

// serverError is sent, as a text frame, when a client asked for something
// it cannot have; the connection stays open.
type serverError struct {
	Error struct {
		Reason  string   `json:"reason"`
		Message string   `json:"message"`
		ItemIDs []string `json:"itemIds,omitempty"`
	} `json:"error"`
}

func errorFrame(reason, msg string, ids []string) []byte {
	var e serverError
	e.Error.Reason, e.Error.Message, e.Error.ItemIDs = reason, msg, ids
	b, _ := json.Marshal(e)
	return b
}

func parseIDs(list []string) (valid, invalid []string) {
	for _, id := range list {
		id = strings.TrimSpace(id)
		if id == "" {
			continue
		}
		if _, err := uuid.Parse(id); err != nil || len(id) != 36 {
			invalid = append(invalid, id)
			continue
		}
		valid = append(valid, id)
	}
	return valid, invalid
}

// maxOutbox bounds the error replies and close requests queued for one
// connection: a client that floods bad requests loses replies, not server
// memory.
const maxOutbox = 8

// wsConn is one client. Its writes are made by whichever writer takes it
// off the queue; scheduled keeps it on the queue at most once, so its
// writes never run concurrently.
type wsConn struct {
	s         *Server
	conn      *websocket.Conn
	sub       *broadcast.Subscriber
	kind      int // TextMessage or BinaryMessage
	scheduled atomic.Bool
	pingDue   atomic.Bool

	mu       sync.Mutex
	outbox   [][]byte // error replies (text frames)
	closeMsg []byte   // a close frame to send, then hang up
	done     bool
}

func (c *wsConn) schedule() {
	if !c.scheduled.CompareAndSwap(false, true) {
		return
	}
	select {
	case c.s.queue <- c:
	default:
		// The queue holds every connection at most once and is sized for
		// them all; this only happens while old connections drain.
		go func() { c.s.queue <- c }()
	}
}

func (c *wsConn) reply(msg []byte) {
	c.mu.Lock()
	if len(c.outbox) < maxOutbox {
		c.outbox = append(c.outbox, msg)
	}
	c.mu.Unlock()
	c.schedule()
}

func (c *wsConn) closeWith(code int, text string) {
	c.mu.Lock()
	if c.closeMsg == nil {
		c.closeMsg = websocket.FormatCloseMessage(code, text)
	}
	c.mu.Unlock()
	c.schedule()
}

// ServeHTTP upgrades the request, subscribes the initial items and returns;
// the connection lives on in its reader goroutine and the writer pool.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !s.checkOrigin(r) {
		s.count(s.refused, "origin")
		http.Error(w, "origin not allowed", http.StatusForbidden)
		return
	}
	var initial []string
	if q := r.URL.Query().Get("items"); q != "" {
		initial = strings.Split(q, ",")
	}
	conn, err := s.upgrader.Upgrade(w, r, nil)
	if err != nil {
		s.count(s.refused, "handshake")
		return // the upgrader has answered
	}
	s.mu.Lock()
	full := s.open.Load() >= int64(s.cfg.MaxConnections)
	if s.closing || full {
		s.mu.Unlock()
		cause, msg := "capacity", "too many connections; retry later"
		if !full {
			cause, msg = "shutdown", "server shutting down"
		}
		s.count(s.refused, cause)
		_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(CloseTryAgainLater, msg), time.Now().Add(time.Second))
		_ = conn.Close()
		return
	}
	c := &wsConn{s: s, conn: conn, kind: websocket.TextMessage}
	if conn.Subprotocol() == ProtoSubprotocol {
		c.kind = websocket.BinaryMessage
	}
	c.sub = s.hub.NewNotifiedSubscriber(s.cfg.MaxSubscriptions, c.schedule)
	s.conns[c] = struct{}{}
	s.open.Add(1)
	s.gone.Add(1)
	s.mu.Unlock()

	conn.SetReadLimit(s.cfg.ReadLimit)
	_ = conn.SetReadDeadline(time.Now().Add(s.cfg.PongTimeout))
	conn.SetPongHandler(func(string) error { return conn.SetReadDeadline(time.Now().Add(s.cfg.PongTimeout)) })
	c.subscribe(context.WithoutCancel(r.Context()), initial)
	// The connection outlives this request: its reader owns it from here.
	go c.read() //nolint:gosec // deliberately not tied to the request's context
}

func (c *wsConn) subscribe(ctx context.Context, ids []string) {
	valid, invalid := parseIDs(ids)
	if len(invalid) > 0 {
		c.reply(errorFrame("INVALID_ARGUMENT", "item ids must be UUIDs", invalid))
	}
	unknown, err := c.s.hub.Subscribe(ctx, c.sub, valid)
	switch {
	case errors.Is(err, broadcast.ErrTooManySubscriptions):
		c.closeWith(ClosePolicy, "too many subscriptions")
	case errors.Is(err, broadcast.ErrClosed):
	case err != nil:
		c.s.log.Warn("subscribe failed", zap.Error(err))
		c.closeWith(websocket.CloseInternalServerErr, "subscribe failed; retry")
	case len(unknown) > 0:
		c.reply(errorFrame("ITEM_NOT_FOUND", "no item has these ids", unknown))
	}
}

// read handles the client's frames until the connection ends, then tears
// it down.
func (c *wsConn) read() {
	defer c.teardown()
	for {
		_, data, err := c.conn.ReadMessage()
		if err != nil {
			if errors.Is(err, websocket.ErrReadLimit) {
				c.s.count(c.s.evicted, "frame_too_big")
			}
			return
		}
		_ = c.conn.SetReadDeadline(time.Now().Add(c.s.cfg.PongTimeout))
		var m clientMessage
		if err := json.Unmarshal(data, &m); err != nil || (m.Subscribe == nil && m.Unsubscribe == nil) {
			c.closeWith(ClosePolicy, `expected {"subscribe":[ids]} or {"unsubscribe":[ids]}`)
			continue // the writer hangs up; the next read fails
		}
		if len(m.Unsubscribe) > 0 {
			c.s.hub.Unsubscribe(c.sub, m.Unsubscribe)
		}
		if len(m.Subscribe) > 0 {
			c.subscribe(context.Background(), m.Subscribe)
		}
	}
}

func (c *wsConn) teardown() {
	c.mu.Lock()
	already := c.done
	c.done = true
	c.mu.Unlock()
	if already {
		return
	}
	_ = c.conn.Close()
	c.s.hub.Close(c.sub)
	c.s.mu.Lock()
	delete(c.s.conns, c)
	c.s.mu.Unlock()
	c.s.open.Add(-1)
	c.s.gone.Done()
}

// hangUp closes the socket; the reader then fails and tears down.
func (c *wsConn) hangUp(cause string) {
	if cause != "" {
		c.s.count(c.s.evicted, cause)
	}
	_ = c.conn.Close()
}

// writer takes connections off the queue and writes what they have.
func (s *Server) writer() {
	for {
		select {
		case <-s.stop:
			return
		case c := <-s.queue:
			c.flush()
			c.scheduled.Store(false)
			if c.hasWork() {
				c.schedule()
			}
		}
	}
}

func (c *wsConn) hasWork() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done {
		return false
	}
	return len(c.outbox) > 0 || c.closeMsg != nil || c.pingDue.Load() || c.sub.Pending() > 0
}

// flush writes the pending frames, replies, ping and close of c.
func (c *wsConn) flush() {
	c.mu.Lock()
	if c.done {
		c.mu.Unlock()
		return
	}
	outbox, closeMsg := c.outbox, c.closeMsg
	c.outbox = nil
	c.mu.Unlock()

	deadline := time.Now().Add(c.s.cfg.WriteTimeout)
	write := func(kind int, data []byte) bool {
		_ = c.conn.SetWriteDeadline(deadline)
		if err := c.conn.WriteMessage(kind, data); err != nil {
			cause := "write_error"
			var ne interface{ Timeout() bool }
			if errors.As(err, &ne) && ne.Timeout() {
				cause = "slow_consumer"
			}
			c.hangUp(cause)
			return false
		}
		return true
	}
	for _, msg := range outbox {
		if !write(websocket.TextMessage, msg) {
			return
		}
	}
	frames, err := c.sub.TryNext()
	if err != nil {
		return
	}
	for _, f := range frames {
		data := f.JSON
		if c.kind == websocket.BinaryMessage {
			data = f.Proto
		}
		if !write(c.kind, data) {
			return
		}
		c.s.sent.Add(1)
		if c.s.lag != nil {
			c.s.lag(time.Since(f.At))
		}
	}
	if c.pingDue.Swap(false) {
		if err := c.conn.WriteControl(websocket.PingMessage, nil, deadline); err != nil {
			c.hangUp("ping_failed")
			return
		}
	}
	if closeMsg != nil {
		_ = c.conn.WriteControl(websocket.CloseMessage, closeMsg, time.Now().Add(time.Second))
		c.hangUp("")
	}
}

// pinger asks every connection to ping its client once per PingInterval.
func (s *Server) pinger() {
	t := time.NewTicker(s.cfg.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.mu.Lock()
			conns := make([]*wsConn, 0, len(s.conns))
			for c := range s.conns {
				conns = append(conns, c)
			}
			s.mu.Unlock()
			for _, c := range conns {
				c.pingDue.Store(true)
				c.schedule()
			}
		}
	}
}

// Shutdown says goodbye (close code 1001) to every connection, waits for
// them to go, or for ctx, and stops the writers.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	conns := make([]*wsConn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.closeWith(CloseGoingAway, "server shutting down")
	}
	done := make(chan struct{})
	go func() { s.gone.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		for _, c := range conns {
			_ = c.conn.Close()
		}
		<-done
		err = ctx.Err()
	}
	close(s.stop)
	s.workers.Wait()
	return err
}
