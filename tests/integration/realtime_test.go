package integration

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	gws "github.com/gorilla/websocket"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	stockguardv1 "github.com/stockguard/stockguard/gen/stockguard/v1"
	"github.com/stockguard/stockguard/gen/stockguard/v1/stockguardv1connect"
	"github.com/stockguard/stockguard/modules/broadcast"
	"github.com/stockguard/stockguard/platform/auth"
	"github.com/stockguard/stockguard/platform/config"
	"github.com/stockguard/stockguard/transports/websocket"
)

func wsURL(srv *testServer, items ...string) string {
	return "ws" + strings.TrimPrefix(srv.base, "http") + "/v1/ws?items=" + strings.Join(items, ",")
}

// wsClient reads StockUpdates off one WebSocket.
type wsClient struct {
	conn *gws.Conn
	mu   sync.Mutex
	last map[string]*stockguardv1.StockUpdate
	seq  []*stockguardv1.StockUpdate
	errs []string
	done chan struct{}
	err  error
}

func dialWS(t *testing.T, url string, header http.Header, subprotocols ...string) (*wsClient, *http.Response, error) {
	t.Helper()
	d := gws.Dialer{HandshakeTimeout: 10 * time.Second, Subprotocols: subprotocols, ReadBufferSize: 1024, WriteBufferSize: 1024}
	conn, res, err := d.Dial(url, header)
	if err != nil {
		return nil, res, err
	}
	c := &wsClient{conn: conn, last: map[string]*stockguardv1.StockUpdate{}, done: make(chan struct{})}
	go c.read()
	t.Cleanup(func() { conn.Close(); <-c.done })
	return c, res, nil
}

func (c *wsClient) read() {
	defer close(c.done)
	for {
		kind, data, err := c.conn.ReadMessage()
		if err != nil {
			c.mu.Lock()
			c.err = err
			c.mu.Unlock()
			return
		}
		var u stockguardv1.StockUpdate
		var derr error
		if kind == gws.BinaryMessage {
			derr = proto.Unmarshal(data, &u)
		} else if strings.Contains(string(data), `"error"`) {
			c.mu.Lock()
			c.errs = append(c.errs, string(data))
			c.mu.Unlock()
			continue
		} else {
			derr = protojson.Unmarshal(data, &u)
		}
		if derr != nil {
			c.mu.Lock()
			c.err = derr
			c.mu.Unlock()
			return
		}
		c.mu.Lock()
		if prev := c.last[u.GetItemId()]; prev != nil && prev.GetVersion() >= u.GetVersion() {
			c.err = fmt.Errorf("version went from %d to %d", prev.GetVersion(), u.GetVersion())
		}
		c.last[u.GetItemId()] = &u
		c.seq = append(c.seq, &u)
		c.mu.Unlock()
	}
}

func (c *wsClient) latest(id string) *stockguardv1.StockUpdate {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last[id]
}

func (c *wsClient) failure() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// waitFor polls until cond holds or the deadline passes.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A burst of purchases reaches 1,000 real WebSocket clients: each ends on
// the item's final level, and never sees a version go backwards.
func TestRealtime_ThousandClientsSeeTheFinalLevel(t *testing.T) {
	srv := startServer(t, postgresStore)
	admin := protocols[0].dial(srv.base, srv.token(t, "ops", auth.RoleAdmin))
	item := createItem(t, admin, "LIVE", 500, 0)
	clients := make([]*wsClient, 1000)
	for i := range clients {
		proto := []string{}
		if i%2 == 1 {
			proto = []string{websocket.ProtoSubprotocol}
		}
		c, _, err := dialWS(t, wsURL(srv, item.GetId()), nil, proto...)
		if err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
		clients[i] = c
	}
	waitFor(t, 30*time.Second, "every snapshot", func() bool {
		for _, c := range clients {
			if c.latest(item.GetId()) == nil {
				return false
			}
		}
		return true
	})
	buyer := protocols[0].dial(srv.base, srv.token(t, "crowd", auth.RoleCustomer))
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			if _, o := buyer.PlaceOrder(context.Background(), buy(item.GetId(), 3)); o.Code != 0 {
				t.Errorf("purchase: %s", o)
			}
		})
	}
	wg.Wait()
	final, _ := admin.GetItem(context.Background(), item.GetId())
	if final.GetSold() != 150 {
		t.Fatalf("sold = %d, want 150", final.GetSold())
	}
	waitFor(t, 30*time.Second, "every client to see the final level", func() bool {
		for _, c := range clients {
			u := c.latest(item.GetId())
			if u == nil || u.GetVersion() != final.GetVersion() {
				return false
			}
		}
		return true
	})
	for i, c := range clients {
		u := c.latest(item.GetId())
		if err := c.failure(); err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
		if u.GetAvailable() != 350 || u.GetSold() != 150 {
			t.Fatalf("client %d ended on %v", i, u)
		}
	}
}

// A client that stops reading is evicted and does not hold up the others.
func TestRealtime_SlowClientIsEvictedOthersKeepUp(t *testing.T) {
	srv := startServer(t, memoryStore, func(c *config.Config) { c.WSWriteTimeout = 300 * time.Millisecond })
	admin := protocols[0].dial(srv.base, srv.token(t, "ops", auth.RoleAdmin))
	var ids []string
	for i := range 100 {
		ids = append(ids, createItem(t, admin, fmt.Sprintf("SLOW-%d", i), 10, 0).GetId())
	}
	baseGoroutines := goleak.IgnoreCurrent()
	baseFDs := openFDs(t)

	// The slow client never reads: its socket fills and its writes time out.
	d := gws.Dialer{ReadBufferSize: 512}
	slow, _, err := d.Dial(wsURL(srv, ids...), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	fast, _, err := dialWS(t, wsURL(srv, ids...), nil)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the snapshots", func() bool { return fast.latest(ids[99]) != nil })

	// Keep publishing, straight through the hub, until the stuck socket
	// fills and the slow client is evicted; then one last round.
	v := int64(1)
	began := time.Now()
	for srv.ws.Stats().Evicted["slow_consumer"] == 0 {
		if time.Since(began) > 30*time.Second {
			t.Fatalf("the slow client was not evicted after %d rounds in %s", v, time.Since(began))
		}
		v++
		for _, id := range ids {
			_ = srv.hub.Publish(broadcast.Update{ItemID: id, Available: 10, Version: v})
		}
		if v%50 == 0 {
			time.Sleep(10 * time.Millisecond) // let the writers run
		}
	}
	evictedAfter := time.Since(began)
	v++
	for _, id := range ids {
		_ = srv.hub.Publish(broadcast.Update{ItemID: id, Available: 10, Version: v})
	}
	waitFor(t, 20*time.Second, "the reading client to get the last round", func() bool {
		for _, id := range ids {
			if u := fast.latest(id); u == nil || u.GetVersion() != v {
				return false
			}
		}
		return true
	})
	waitFor(t, 10*time.Second, "the connection count to drop to the one reader", func() bool { return srv.ws.Stats().Connections == 1 })
	t.Logf("the stuck client was evicted after %d rounds (%s); the reader kept up", v, evictedAfter)
	if err := fast.failure(); err != nil {
		t.Fatalf("reading client: %v", err)
	}

	// Once the reader leaves too, goroutines and descriptors are back where they were.
	fast.conn.Close()
	<-fast.done
	slow.Close()
	waitFor(t, 10*time.Second, "every connection to close", func() bool { return srv.ws.Stats().Connections == 0 })
	goleak.VerifyNone(t, baseGoroutines)
	waitFor(t, 10*time.Second, "descriptors back to the baseline", func() bool { return openFDs(t) <= baseFDs })
}

func openFDs(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot count descriptors: %v", err)
	}
	return len(entries)
}

// Refusals come with clear answers.
func TestRealtime_Refusals(t *testing.T) {
	srv := startServer(t, memoryStore, func(c *config.Config) {
		c.CORSOrigins = []string{"https://shop.example.com"}
		c.WSMaxConnections = 3
	})
	admin := protocols[0].dial(srv.base, srv.token(t, "ops", auth.RoleAdmin))
	item := createItem(t, admin, "REF", 10, 0)

	_, res, err := dialWS(t, wsURL(srv, item.GetId()), http.Header{"Origin": {"https://evil.example"}})
	if err == nil || res == nil || res.StatusCode != http.StatusForbidden {
		t.Fatalf("foreign origin: %v %v, want 403", err, res)
	}
	if _, _, err := dialWS(t, wsURL(srv, item.GetId()), http.Header{"Origin": {"https://shop.example.com"}}); err != nil {
		t.Fatalf("allowed origin refused: %v", err)
	}

	unknownID := "0192f0c4-6f1e-7a4b-9c1d-2e3f4a5b6c7d"
	c, _, err := dialWS(t, wsURL(srv, item.GetId(), unknownID), nil)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "an ITEM_NOT_FOUND error frame", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.errs) == 1 && strings.Contains(c.errs[0], "ITEM_NOT_FOUND") && strings.Contains(c.errs[0], unknownID)
	})
	if c.latest(item.GetId()) == nil {
		waitFor(t, 5*time.Second, "the known item's snapshot", func() bool { return c.latest(item.GetId()) != nil })
	}

	big, _, err := dialWS(t, wsURL(srv), nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = big.conn.WriteMessage(gws.TextMessage, []byte(`{"subscribe":["`+strings.Repeat("a", 10_000)+`"]}`))
	<-big.done
	if !gws.IsCloseError(big.failure(), gws.CloseMessageTooBig) {
		t.Fatalf("oversized frame ended with %v, want close 1009", big.failure())
	}

	waitFor(t, 5*time.Second, "slots to free", func() bool { return srv.ws.Stats().Connections <= 2 })
	var extra []*wsClient
	for srv.ws.Stats().Connections < 3 {
		e, _, err := dialWS(t, wsURL(srv), nil)
		if err != nil {
			t.Fatal(err)
		}
		extra = append(extra, e)
		time.Sleep(20 * time.Millisecond)
	}
	over, _, err := dialWS(t, wsURL(srv), nil)
	if err != nil {
		t.Fatal(err)
	}
	<-over.done
	if !gws.IsCloseError(over.failure(), gws.CloseTryAgainLater) {
		t.Fatalf("connection over the limit ended with %v, want close 1013", over.failure())
	}
	if len(extra) == 0 && srv.ws.Stats().Connections > 3 {
		t.Fatal("more connections open than allowed")
	}
}

// WatchStock over Connect and gRPC sees the same sequence as a WebSocket
// client: the snapshot, then each change.
func TestRealtime_WatchStockMatchesTheWebSocket(t *testing.T) {
	srv := startServer(t, postgresStore)
	admin := protocols[0].dial(srv.base, srv.token(t, "ops", auth.RoleAdmin))
	item := createItem(t, admin, "WATCH", 100, 0)
	ws, _, err := dialWS(t, wsURL(srv, item.GetId()), nil)
	if err != nil {
		t.Fatal(err)
	}
	type streamed struct {
		mu  sync.Mutex
		seq []int64
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	watchers := map[string]*streamed{}
	var wg sync.WaitGroup
	for _, p := range []struct {
		name string
		c    stockguardv1connect.StockServiceClient
	}{
		{"connect", stockguardv1connect.NewStockServiceClient(http1Client(), srv.base)},
		{"grpc", stockguardv1connect.NewStockServiceClient(h2cClient(), srv.base, connect.WithGRPC())},
		{"grpc-web", stockguardv1connect.NewStockServiceClient(http1Client(), srv.base, connect.WithGRPCWeb())},
	} {
		s := &streamed{}
		watchers[p.name] = s
		stream, err := p.c.WatchStock(ctx, connect.NewRequest(&stockguardv1.WatchStockRequest{ItemIds: []string{item.GetId()}}))
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			defer stream.Close()
			for stream.Receive() {
				s.mu.Lock()
				s.seq = append(s.seq, stream.Msg().GetVersion())
				s.mu.Unlock()
			}
		})
	}
	buyer := protocols[0].dial(srv.base, srv.token(t, "alice", auth.RoleCustomer))
	for range 5 {
		waitFor(t, 10*time.Second, "every watcher to catch up", func() bool {
			want := ws.latest(item.GetId())
			if want == nil {
				return false
			}
			for _, s := range watchers {
				s.mu.Lock()
				n := len(s.seq)
				caught := n > 0 && s.seq[n-1] == want.GetVersion()
				s.mu.Unlock()
				if !caught {
					return false
				}
			}
			return true
		})
		if _, o := buyer.PlaceOrder(context.Background(), buy(item.GetId(), 1)); o.Code != 0 {
			t.Fatal(o)
		}
	}
	waitFor(t, 10*time.Second, "version 6 everywhere", func() bool {
		for _, s := range watchers {
			s.mu.Lock()
			n := len(s.seq)
			ok := n > 0 && s.seq[n-1] == 6
			s.mu.Unlock()
			if !ok {
				return false
			}
		}
		u := ws.latest(item.GetId())
		return u != nil && u.GetVersion() == 6
	})
	ws.mu.Lock()
	var wsSeq []int64
	for _, u := range ws.seq {
		wsSeq = append(wsSeq, u.GetVersion())
	}
	ws.mu.Unlock()
	for name, s := range watchers {
		s.mu.Lock()
		if fmt.Sprint(s.seq) != fmt.Sprint(wsSeq) {
			t.Errorf("%s saw versions %v; the WebSocket saw %v", name, s.seq, wsSeq)
		}
		s.mu.Unlock()
	}
	cancel()
	wg.Wait()

	// Unknown items are refused before the stream starts.
	stream, err := stockguardv1connect.NewStockServiceClient(http1Client(), srv.base).WatchStock(context.Background(),
		connect.NewRequest(&stockguardv1.WatchStockRequest{ItemIds: []string{"0192f0c4-6f1e-7a4b-9c1d-2e3f4a5b6c7d"}}))
	if err == nil {
		for stream.Receive() {
		}
		err = stream.Err()
	}
	if o := rpcOutcome(err); o.Code != connect.CodeNotFound || o.Reason != "ITEM_NOT_FOUND" {
		t.Fatalf("watching an unknown item = %s", o)
	}
}

// Two replicas on one database: a purchase on A reaches a watcher on B, and
// B's LISTEN connection recovers from being killed.
func TestRealtime_CrossReplicaAndListenRecovery(t *testing.T) {
	a := startServer(t, postgresStore)
	b := startServer(t, postgresStore, func(c *config.Config) { c.DatabaseURL = a.cfg.DatabaseURL })
	admin := protocols[0].dial(a.base, a.token(t, "ops", auth.RoleAdmin))
	item := createItem(t, admin, "XREP", 100, 0)
	watcher, _, err := dialWS(t, wsURL(b, item.GetId()), nil)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the snapshot on B", func() bool { return watcher.latest(item.GetId()) != nil })
	buyer := protocols[0].dial(a.base, a.token(t, "alice", auth.RoleCustomer))
	if _, o := buyer.PlaceOrder(context.Background(), buy(item.GetId(), 2)); o.Code != 0 {
		t.Fatal(o)
	}
	waitFor(t, 10*time.Second, "B's watcher to see A's purchase", func() bool {
		u := watcher.latest(item.GetId())
		return u.GetSold() == 2 && u.GetVersion() == 2
	})

	// Kill every LISTEN connection on the database, then buy while they are down.
	conn, err := pgxConnect(a.cfg.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var killed int
	if err := conn.QueryRow(context.Background(), `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = current_database() AND query LIKE 'LISTEN %' AND pid <> pg_backend_pid()`).Scan(&killed); err != nil {
		t.Fatal(err)
	}
	if killed != 2 {
		t.Fatalf("killed %d LISTEN connections, want one per replica", killed)
	}
	if _, o := buyer.PlaceOrder(context.Background(), buy(item.GetId(), 3)); o.Code != 0 {
		t.Fatal(o)
	}
	waitFor(t, 20*time.Second, "B's watcher to converge after the feed recovered", func() bool {
		u := watcher.latest(item.GetId())
		return u.GetSold() == 5 && u.GetVersion() == 3
	})
	if err := watcher.failure(); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("watcher: %v", err)
	}
}

// Stopping the app says goodbye to every WebSocket with close code 1001.
func TestRealtime_ShutdownClosesSocketsWithGoingAway(t *testing.T) {
	srv := startServer(t, memoryStore)
	admin := protocols[0].dial(srv.base, srv.token(t, "ops", auth.RoleAdmin))
	item := createItem(t, admin, "BYE", 1, 0)
	var clients []*wsClient
	for range 5 {
		c, _, err := dialWS(t, wsURL(srv, item.GetId()), nil)
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
	}
	waitFor(t, 5*time.Second, "the snapshots", func() bool { return clients[4].latest(item.GetId()) != nil })
	srv.stop()
	for i, c := range clients {
		select {
		case <-c.done:
		case <-time.After(10 * time.Second):
			t.Fatalf("client %d still open after shutdown", i)
		}
		if !gws.IsCloseError(c.failure(), gws.CloseGoingAway) {
			t.Fatalf("client %d ended with %v, want close 1001", i, c.failure())
		}
	}
}
