// Package websocket serves live stock over WebSockets at GET /v1/ws with
// gorilla/websocket. Each connection has two goroutines: the HTTP handler's
// own, which becomes the writer, and a reader for control frames and
// subscribe messages. Write buffers come from a shared pool, so an idle
// connection holds none.
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
	CloseSlowConsumer  = 4008                           // the client did not drain its socket in time
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

	open     atomic.Int64
	sent     atomic.Uint64
	mu       sync.Mutex
	conns    map[*websocket.Conn]chan struct{} // -> closed to ask the writer to say goodbye
	refused  map[string]uint64
	evicted  map[string]uint64
	closing  bool
	handlers sync.WaitGroup
}

// NewServer returns the handler.
func NewServer(hub *broadcast.Hub, cfg Config, log *zap.Logger) *Server {
	s := &Server{hub: hub, cfg: cfg, log: log.Named("websocket"),
		conns: map[*websocket.Conn]chan struct{}{}, refused: map[string]uint64{}, evicted: map[string]uint64{}}
	s.upgrader = websocket.Upgrader{
		HandshakeTimeout: 10 * time.Second,
		ReadBufferSize:   512, // client frames are small subscribe messages
		WriteBufferSize:  2048,
		WriteBufferPool:  &sync.Pool{},
		Subprotocols:     []string{ProtoSubprotocol, JSONSubprotocol},
		CheckOrigin:      s.checkOrigin,
	}
	return s
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

// ServeHTTP upgrades the request and serves the connection until it ends.
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
	bye := make(chan struct{})
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
	s.conns[conn] = bye
	s.open.Add(1)
	s.handlers.Add(1)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.conns, conn)
		s.mu.Unlock()
		s.open.Add(-1)
		s.handlers.Done()
	}()
	s.serve(r.Context(), conn, initial, bye)
}

func (s *Server) serve(ctx context.Context, conn *websocket.Conn, initial []string, bye <-chan struct{}) {
	defer conn.Close()
	binary := conn.Subprotocol() == ProtoSubprotocol
	sub := s.hub.NewSubscriber(s.cfg.MaxSubscriptions)
	defer s.hub.Close(sub)

	replies := make(chan []byte, 8) // reader -> writer; bounded, see reader
	closeWith := make(chan []byte, 1)
	readerDone := make(chan struct{})

	refuse := func(code int, msg string) []byte { return websocket.FormatCloseMessage(code, msg) }
	subscribe := func(ids []string) {
		valid, invalid := parseIDs(ids)
		if len(invalid) > 0 {
			trySend(replies, errorFrame("INVALID_ARGUMENT", "item ids must be UUIDs", invalid))
		}
		unknown, err := s.hub.Subscribe(ctx, sub, valid)
		switch {
		case errors.Is(err, broadcast.ErrTooManySubscriptions):
			trySend(closeWith, refuse(ClosePolicy, "too many subscriptions"))
		case err != nil:
			s.log.Warn("subscribe failed", zap.Error(err))
			trySend(closeWith, refuse(websocket.CloseInternalServerErr, "subscribe failed; retry"))
		case len(unknown) > 0:
			trySend(replies, errorFrame("ITEM_NOT_FOUND", "no item has these ids", unknown))
		}
	}
	subscribe(initial)

	conn.SetReadLimit(s.cfg.ReadLimit)
	_ = conn.SetReadDeadline(time.Now().Add(s.cfg.PongTimeout))
	conn.SetPongHandler(func(string) error { return conn.SetReadDeadline(time.Now().Add(s.cfg.PongTimeout)) })
	go func() {
		defer close(readerDone)
		for {
			_, data, err := conn.ReadMessage()
			if err != nil {
				if errors.Is(err, websocket.ErrReadLimit) {
					s.count(s.evicted, "frame_too_big")
				}
				return
			}
			_ = conn.SetReadDeadline(time.Now().Add(s.cfg.PongTimeout))
			var m clientMessage
			if err := json.Unmarshal(data, &m); err != nil || (m.Subscribe == nil && m.Unsubscribe == nil) {
				trySend(closeWith, refuse(ClosePolicy, `expected {"subscribe":[ids]} or {"unsubscribe":[ids]}`))
				return
			}
			if len(m.Unsubscribe) > 0 {
				s.hub.Unsubscribe(sub, m.Unsubscribe)
			}
			if len(m.Subscribe) > 0 {
				subscribe(m.Subscribe)
			}
		}
	}()

	ping := time.NewTicker(s.cfg.PingInterval)
	defer ping.Stop()
	kind := websocket.TextMessage
	if binary {
		kind = websocket.BinaryMessage
	}
	write := func(kind int, data []byte) bool {
		_ = conn.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
		if err := conn.WriteMessage(kind, data); err != nil {
			cause := "write_error"
			var ne interface{ Timeout() bool }
			if errors.As(err, &ne) && ne.Timeout() {
				cause = "slow_consumer"
			}
			s.count(s.evicted, cause)
			return false
		}
		return true
	}
	for {
		select {
		case <-sub.Ready():
			frames, err := sub.TryNext()
			if err != nil {
				return
			}
			for _, f := range frames {
				data := f.JSON
				if binary {
					data = f.Proto
				}
				if !write(kind, data) {
					return
				}
				s.sent.Add(1)
			}
		case msg := <-replies:
			if !write(websocket.TextMessage, msg) {
				return
			}
		case msg := <-closeWith:
			_ = conn.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
			return
		case <-ping.C:
			if err := conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(s.cfg.WriteTimeout)); err != nil {
				s.count(s.evicted, "ping_failed")
				return
			}
		case <-readerDone:
			return
		case <-bye:
			_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(CloseGoingAway, "server shutting down"), time.Now().Add(time.Second))
			return
		}
	}
}

// trySend delivers msg unless ch is full: a client that floods requests
// faster than its replies drain loses replies, not server memory.
func trySend(ch chan []byte, msg []byte) {
	select {
	case ch <- msg:
	default:
	}
}

// Shutdown says goodbye (close code 1001) to every connection and waits for
// their handlers, or for ctx.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	for _, bye := range s.conns {
		close(bye)
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.handlers.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.mu.Lock()
		for c := range s.conns {
			_ = c.Close()
		}
		s.mu.Unlock()
		return ctx.Err()
	}
}
