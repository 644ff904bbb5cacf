// Command fanout measures live-stock fan-out: it opens N real WebSocket
// connections to a server, makes a burst of stock changes, and reports how
// long the last change of the burst took to reach each client, from the
// moment it was sent (p50/p99/max), messages
// per second, and the server's memory per idle connection. It runs the same
// measurement against stockguard and against a minimal chat-style hub
// (a baseline built into this command), side by side, each in its own
// process so their memory is measured apart. Loopback only.
//
//	go build -o /tmp/stockguard ./cmd/stockguard
//	go run ./benchmarks/fanout -server-bin /tmp/stockguard -n 10000 -burst 50
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/stockguard/stockguard/benchmarks/internal/procstat"
	"github.com/stockguard/stockguard/platform/auth"
)

func main() {
	var (
		n         = flag.Int("n", 2000, "WebSocket connections to open")
		burst     = flag.Int("burst", 50, "stock changes in the burst")
		targets   = flag.String("targets", "stockguard,chat", "comma-separated: stockguard, chat")
		serverBin = flag.String("server-bin", "", "stockguard binary (required for the stockguard target)")
		jsonOut   = flag.String("json", "", "also write the results as JSON to this file")
		serveChat = flag.String("serve-chat", "", "internal: run the chat baseline server on this address")
		timeout   = flag.Duration("timeout", 60*time.Second, "give up waiting for deliveries after this")
	)
	flag.Parse()
	if *serveChat != "" {
		runChatServer(*serveChat)
		return
	}
	var results []result
	for _, t := range strings.Split(*targets, ",") {
		var r result
		var err error
		switch strings.TrimSpace(t) {
		case "stockguard":
			if *serverBin == "" {
				fail(fmt.Errorf("-server-bin is required for the stockguard target"))
			}
			r, err = measure(newStockguard(*serverBin), *n, *burst, *timeout)
		case "chat":
			r, err = measure(newChat(), *n, *burst, *timeout)
		default:
			err = fmt.Errorf("unknown target %q", t)
		}
		if err != nil {
			fail(err)
		}
		results = append(results, r)
	}
	printTable(os.Stdout, results)
	if *jsonOut != "" {
		b, _ := json.MarshalIndent(results, "", "  ")
		if err := os.WriteFile(*jsonOut, b, 0o644); err != nil { //nolint:gosec // a results file
			fail(err)
		}
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "fanout:", err)
	os.Exit(1)
}

// target is a server under test.
type target interface {
	Name() string
	Start() (pid int, err error)
	Stop()
	WSURL() string                                    // with the watched item
	Change(ctx context.Context, i int) (int64, error) // makes one stock change; returns its version if known
	FinalVersion(ctx context.Context) (int64, error)
}

type result struct {
	Target          string  `json:"target"`
	Connections     int     `json:"connections"`
	Burst           int     `json:"burst"`
	ConnectSeconds  float64 `json:"connect_seconds"`
	P50ms           float64 `json:"last_change_p50_ms"`
	P99ms           float64 `json:"last_change_p99_ms"`
	MaxMs           float64 `json:"last_change_max_ms"`
	FromBurstP99ms  float64 `json:"from_burst_start_p99_ms"`
	BurstSeconds    float64 `json:"burst_seconds"`
	Messages        int64   `json:"messages"`
	MessagesPerSec  float64 `json:"messages_per_second"`
	RSSIdleMB       float64 `json:"server_rss_before_mb"`
	RSSConnectedMB  float64 `json:"server_rss_connected_mb"`
	BytesPerConn    float64 `json:"server_rss_bytes_per_connection"`
	Missed          int     `json:"clients_missing_final"`
	ServerPeakRSSMB float64 `json:"server_peak_rss_mb"`
}

type client struct {
	mu      sync.Mutex
	arrived map[int64]time.Time // version -> first arrival
	last    int64
}

func measure(t target, n, burst int, timeout time.Duration) (result, error) {
	r := result{Target: t.Name(), Connections: n, Burst: burst}
	pid, err := t.Start()
	if err != nil {
		return r, err
	}
	defer t.Stop()
	time.Sleep(time.Second)
	rssBefore := procstat.RSS(pid)

	fmt.Fprintf(os.Stderr, "[%s] connecting %d clients\n", t.Name(), n)
	clients := make([]*client, n)
	conns := make([]*websocket.Conn, n)
	var messages atomic.Int64
	began := time.Now()
	d := websocket.Dialer{ReadBufferSize: 1024, WriteBufferSize: 256, HandshakeTimeout: 30 * time.Second}
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	var connected atomic.Int64
	stopProgress := procstat.Progress(func() string { return fmt.Sprintf("[%s] connected %d/%d", t.Name(), connected.Load(), n) })
	var dialErr atomic.Value
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			conn, res, err := d.Dial(t.WSURL(), nil)
			if res != nil {
				_ = res.Body.Close()
			}
			if err != nil {
				dialErr.Store(err)
				return
			}
			conns[i] = conn
			c := &client{arrived: map[int64]time.Time{}}
			clients[i] = c
			connected.Add(1)
			go readLoop(conn, c, &messages)
		})
	}
	wg.Wait()
	stopProgress()
	if err, _ := dialErr.Load().(error); err != nil {
		return r, fmt.Errorf("%s: dial: %w", t.Name(), err)
	}
	r.ConnectSeconds = time.Since(began).Seconds()
	time.Sleep(3 * time.Second) // let snapshots land and the server settle
	rssConnected := procstat.RSS(pid)
	r.RSSIdleMB, r.RSSConnectedMB = mb(rssBefore), mb(rssConnected)
	r.BytesPerConn = float64(rssConnected-rssBefore) / float64(n)
	messages.Store(0)

	fmt.Fprintf(os.Stderr, "[%s] burst of %d changes\n", t.Name(), burst)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	// The burst: changes back to back, as fast as the server accepts them.
	// Latency is measured from the moment the last change was sent.
	burstStart := time.Now()
	var lastChange time.Time
	for i := range burst {
		lastChange = time.Now()
		if _, err := t.Change(ctx, i); err != nil {
			return r, fmt.Errorf("%s: change: %w", t.Name(), err)
		}
	}
	r.BurstSeconds = time.Since(burstStart).Seconds()
	final, err := t.FinalVersion(ctx)
	if err != nil {
		return r, err
	}
	stopProgress = procstat.Progress(func() string {
		got := 0
		for _, c := range clients {
			c.mu.Lock()
			if c.last >= final {
				got++
			}
			c.mu.Unlock()
		}
		return fmt.Sprintf("[%s] %d/%d clients have the final version", t.Name(), got, n)
	})
	for ctx.Err() == nil {
		all := true
		for _, c := range clients {
			c.mu.Lock()
			ok := c.last >= final
			c.mu.Unlock()
			if !ok {
				all = false
				break
			}
		}
		if all {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	stopProgress()
	var fromLast, fromStart []float64
	var lastArrival time.Time
	for _, c := range clients {
		c.mu.Lock()
		at, ok := c.arrived[final]
		c.mu.Unlock()
		if !ok {
			r.Missed++
			continue
		}
		fromLast = append(fromLast, max(0, at.Sub(lastChange).Seconds()*1000))
		fromStart = append(fromStart, at.Sub(burstStart).Seconds()*1000)
		if at.After(lastArrival) {
			lastArrival = at
		}
	}
	sort.Float64s(fromLast)
	sort.Float64s(fromStart)
	r.P50ms, r.P99ms, r.MaxMs = pct(fromLast, 50), pct(fromLast, 99), pct(fromLast, 100)
	r.FromBurstP99ms = pct(fromStart, 99)
	r.Messages = messages.Load()
	if d := lastArrival.Sub(burstStart).Seconds(); d > 0 {
		r.MessagesPerSec = float64(r.Messages) / d
	}
	r.ServerPeakRSSMB = mb(procstat.PeakRSS(pid))
	for _, c := range conns {
		if c != nil {
			_ = c.Close()
		}
	}
	return r, nil
}

func readLoop(conn *websocket.Conn, c *client, messages *atomic.Int64) {
	var m struct {
		Version string `json:"version"`
	}
	for {
		_, data, err := conn.ReadMessage()
		if err != nil {
			return
		}
		now := time.Now()
		messages.Add(1)
		if json.Unmarshal(data, &m) != nil {
			continue
		}
		v, _ := strconv.ParseInt(m.Version, 10, 64)
		c.mu.Lock()
		if _, seen := c.arrived[v]; !seen {
			c.arrived[v] = now
		}
		c.last = max(c.last, v)
		c.mu.Unlock()
	}
}

func pct(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted)-1) * p / 100)
	return sorted[i]
}

func mb(b int64) float64 { return float64(b) / (1 << 20) }

func printTable(w io.Writer, rs []result) {
	fmt.Fprintf(w, "\n%-11s %7s %5s %8s %9s %9s %9s %15s %10s %11s %12s %7s\n",
		"target", "clients", "burst", "burst s", "p50 ms", "p99 ms", "max ms", "p99 from start", "msgs/s", "RSS/conn B", "peak RSS MB", "missed")
	for _, r := range rs {
		fmt.Fprintf(w, "%-11s %7d %5d %8.2f %9.1f %9.1f %9.1f %15.1f %10.0f %11.0f %12.1f %7d\n",
			r.Target, r.Connections, r.Burst, r.BurstSeconds, r.P50ms, r.P99ms, r.MaxMs, r.FromBurstP99ms, r.MessagesPerSec, r.BytesPerConn, r.ServerPeakRSSMB, r.Missed)
	}
}

func freeAddr() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fail(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func waitHTTP(url string) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		res, err := http.Get(url) //nolint:gosec,noctx // a loopback readiness poll
		if err == nil {
			_ = res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s did not answer", url)
}

// stockguardTarget runs the real server with the in-memory store and makes
// real purchases over REST.
type stockguardTarget struct {
	bin, api, admin, secret string
	cmd                     *exec.Cmd
	itemID, customer        string
	http                    *http.Client
}

func newStockguard(bin string) *stockguardTarget {
	return &stockguardTarget{bin: bin, secret: "fanout-benchmark-secret-0123456789abcdef", http: &http.Client{Timeout: 30 * time.Second}}
}

func (s *stockguardTarget) Name() string { return "stockguard" }

func (s *stockguardTarget) Start() (int, error) {
	s.api, s.admin = freeAddr(), freeAddr()
	s.cmd = exec.Command(s.bin) //nolint:gosec // the binary under test
	s.cmd.Env = append(os.Environ(), "STOCKGUARD_HTTP_ADDR="+s.api, "STOCKGUARD_ADMIN_ADDR="+s.admin,
		"STOCKGUARD_JWT_SECRET="+s.secret, "STOCKGUARD_RATE_LIMIT_RPS=0", "STOCKGUARD_LOG_LEVEL=warn",
		"STOCKGUARD_WS_MAX_CONNECTIONS=1000000", "DATABASE_URL=")
	s.cmd.Stderr = os.Stderr
	if err := s.cmd.Start(); err != nil {
		return 0, err
	}
	if err := waitHTTP("http://" + s.admin + "/readyz"); err != nil {
		return 0, err
	}
	a := auth.NewAuthority([]byte(s.secret))
	admin, _ := a.Issue("bench-admin", auth.RoleAdmin, time.Hour)
	s.customer, _ = a.Issue("bench-buyer", auth.RoleCustomer, time.Hour)
	body := `{"sku":"FANOUT","name":"fan-out benchmark","initialStock":1000000}`
	var out struct{ Item struct{ ID string } }
	if err := s.post(context.Background(), "/v1/items", admin, body, &out); err != nil {
		return 0, err
	}
	s.itemID = out.Item.ID
	return s.cmd.Process.Pid, nil
}

func (s *stockguardTarget) post(ctx context.Context, path, token, body string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+s.api+path, strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := s.http.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("POST %s: %d %s", path, res.StatusCode, b)
	}
	return json.Unmarshal(b, out)
}

func (s *stockguardTarget) Stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Signal(os.Interrupt)
		_ = s.cmd.Wait()
	}
}

func (s *stockguardTarget) WSURL() string { return "ws://" + s.api + "/v1/ws?items=" + s.itemID }

func (s *stockguardTarget) Change(ctx context.Context, _ int) (int64, error) {
	var out json.RawMessage
	return 0, s.post(ctx, "/v1/orders", s.customer, `{"lines":[{"itemId":"`+s.itemID+`","quantity":1}]}`, &out)
}

func (s *stockguardTarget) FinalVersion(ctx context.Context) (int64, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.api+"/v1/items/"+s.itemID, nil)
	res, err := s.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	var out struct{ Item struct{ Version string } }
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
		return 0, err
	}
	return strconv.ParseInt(out.Item.Version, 10, 64)
}

// chatTarget runs this command's chat-style baseline hub in a child process.
type chatTarget struct {
	addr    string
	cmd     *exec.Cmd
	version atomic.Int64
	http    *http.Client
}

func newChat() *chatTarget { return &chatTarget{http: &http.Client{Timeout: 30 * time.Second}} }

func (c *chatTarget) Name() string { return "chat-hub" }

func (c *chatTarget) Start() (int, error) {
	c.addr = freeAddr()
	self, err := os.Executable()
	if err != nil {
		return 0, err
	}
	c.cmd = exec.Command(self, "-serve-chat", c.addr) //nolint:gosec // re-running this command
	c.cmd.Stderr = os.Stderr
	if err := c.cmd.Start(); err != nil {
		return 0, err
	}
	return c.cmd.Process.Pid, waitHTTP("http://" + c.addr + "/healthz")
}

func (c *chatTarget) Stop() {
	if c.cmd != nil && c.cmd.Process != nil {
		_ = c.cmd.Process.Kill()
		_ = c.cmd.Wait()
	}
}

func (c *chatTarget) WSURL() string { return "ws://" + c.addr + "/ws" }

func (c *chatTarget) Change(ctx context.Context, _ int) (int64, error) {
	v := c.version.Add(1) + 1
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+c.addr+"/publish?v="+strconv.FormatInt(v, 10), bytes.NewReader(nil))
	res, err := c.http.Do(req)
	if err != nil {
		return 0, err
	}
	_ = res.Body.Close()
	return v, nil
}

func (c *chatTarget) FinalVersion(context.Context) (int64, error) { return c.version.Load() + 1, nil }
