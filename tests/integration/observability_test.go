package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus/testutil"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/fx"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/stockguard/stockguard/cmd/stockguard/app"
	"github.com/stockguard/stockguard/platform/auth"
)

var metricNames = regexp.MustCompile(`stockguard_[a-z_]+`)

// A real scrape after real traffic passes `promtool check metrics`, and
// carries every metric the shipped dashboard and alerts use.
func TestObservability_ScrapePassesPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("STOCKGUARD_REQUIRE_PROMTOOL") != "" {
			t.Fatal("promtool is required (Debian package prometheus) but not installed")
		}
		t.Skip("promtool not installed (Debian package prometheus); CI installs it")
	}
	srv := startServer(t, postgresStore)
	admin := protocols[0].dial(srv.base, srv.token(t, "ops", auth.RoleAdmin))
	item := createItem(t, admin, "SCRAPE", 2, 0)
	ws, _, err := dialWS(t, wsURL(srv, item.GetId()), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range protocols {
		_, _ = p.dial(srv.base, srv.token(t, "alice", auth.RoleCustomer)).PlaceOrder(context.Background(), buy(item.GetId(), 1))
	}
	waitFor(t, 5*time.Second, "the WebSocket to see the sell-out", func() bool {
		u := ws.latest(item.GetId())
		return u != nil && u.GetAvailable() == 0
	})
	res, body := restDo(t, http.MethodGet, srv.adminBase+"/metrics", nil, nil)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("/metrics = %d", res.StatusCode)
	}
	for _, want := range []string{"stockguard_rpc_requests_total", "stockguard_rpc_duration_seconds_bucket", "stockguard_db_pool_acquired_connections",
		"stockguard_db_transaction_duration_seconds", "stockguard_db_item_lock_wait_seconds", "stockguard_order_outcomes_total",
		"stockguard_broadcast_messages_sent_total", "stockguard_websocket_connections", "stockguard_stock_available",
		"stockguard_invariant_violations", "go_goroutines", "process_resident_memory_bytes"} {
		if !bytes.Contains(body, []byte(want)) {
			t.Errorf("scrape lacks %s", want)
		}
	}
	// Every metric the dashboard and the alerts use exists.
	for _, file := range []string{"../../deploy/grafana/stockguard.json", "../../deploy/prometheus/alerts.yml"} {
		raw, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range metricNames.FindAllString(string(raw), -1) {
			base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_count"), "_sum")
			if !bytes.Contains(body, []byte("\n"+base)) && !bytes.Contains(body, []byte("# TYPE "+base+" ")) {
				t.Errorf("%s uses %s, which the server does not expose", file, name)
			}
		}
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}

// Every failed purchase is counted once under its reason, whatever the protocol.
func TestObservability_OrderOutcomesAreCountedOnce(t *testing.T) {
	srv := startServer(t, memoryStore)
	admin := protocols[0].dial(srv.base, srv.token(t, "ops", auth.RoleAdmin))
	item := createItem(t, admin, "COUNT", 2, 0)
	for i, p := range protocols {
		c := p.dial(srv.base, srv.token(t, "alice", auth.RoleCustomer))
		req := buy(item.GetId(), 1)
		req.IdempotencyKey = fmt.Sprintf("k-%d", i%2) // the second use of each key replays (or is refused once sold out)
		_, _ = c.PlaceOrder(context.Background(), req)
	}
	// k-0 placed, k-1 placed, k-0 replayed, k-1 replayed, k-0 replayed.
	for range 3 {
		_, _ = protocols[4].dial(srv.base, srv.token(t, "bob", auth.RoleCustomer)).PlaceOrder(context.Background(), buy(item.GetId(), 1))
	}
	want := `
# HELP stockguard_order_outcomes_total PlaceOrder outcomes: result placed, replayed or rejected, with the rejection reason.
# TYPE stockguard_order_outcomes_total counter
stockguard_order_outcomes_total{reason="",result="placed"} 2
stockguard_order_outcomes_total{reason="",result="replayed"} 3
stockguard_order_outcomes_total{reason="INSUFFICIENT_STOCK",result="rejected"} 3
`
	if err := testutil.GatherAndCompare(srv.registry, strings.NewReader(want), "stockguard_order_outcomes_total"); err != nil {
		t.Fatal(err)
	}
}

// traceparent is a client-side W3C trace context.
const (
	clientTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	clientSpan  = "00f067aa0ba902b7"
)

type traceHeader struct{}

func (traceHeader) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		req.Header().Set("traceparent", "00-"+clientTrace+"-"+clientSpan+"-01")
		return next(ctx, req)
	}
}
func (traceHeader) WrapStreamingClient(n connect.StreamingClientFunc) connect.StreamingClientFunc {
	return n
}
func (traceHeader) WrapStreamingHandler(n connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return n
}

// syncBuffer collects log lines from the server.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) Sync() error    { return nil }
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// A purchase over each protocol makes one trace: the client's trace
// continues into the RPC span, whose children include the SQL; the
// broadcast to the item's watcher is a span linked to it; and the
// access-log line (JSON) carries the same trace id.
func TestObservability_TracesAndLogsFollowTheRequest(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	logs := &syncBuffer{}
	log := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), logs, zap.InfoLevel))
	srv := startServerWith(t, postgresStore, log, fx.Decorate(func(trace.TracerProvider) trace.TracerProvider { return tp }))
	admin := protocols[0].dial(srv.base, srv.token(t, "ops", auth.RoleAdmin))
	item := createItem(t, admin, "TRACE", 100, 0)
	// A broadcast has a span only when somebody watches the item.
	watcher, _, err := dialWS(t, wsURL(srv, item.GetId()), nil)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the watcher's snapshot", func() bool { return watcher.latest(item.GetId()) != nil })

	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			rec.Reset()
			token := srv.token(t, "alice", auth.RoleCustomer)
			if p.name == "rest" {
				res, body := restDo(t, http.MethodPost, srv.base+"/v1/orders", map[string]string{
					"Authorization": "Bearer " + token, "Content-Type": "application/json",
					"traceparent": "00-" + clientTrace + "-" + clientSpan + "-01",
				}, strings.NewReader(`{"lines":[{"itemId":"`+item.GetId()+`","quantity":1}]}`))
				if res.StatusCode != http.StatusOK {
					t.Fatalf("REST purchase: %d %s", res.StatusCode, body)
				}
			} else {
				traced := newRPCClientWith(srv.base, token, p, traceHeader{})
				if _, o := traced.PlaceOrder(context.Background(), buy(item.GetId(), 1)); o.Code != 0 {
					t.Fatalf("purchase: %s", o)
				}
			}
			var rpc sdktrace.ReadOnlySpan
			waitFor(t, 5*time.Second, "the RPC span", func() bool {
				for _, s := range rec.Ended() {
					if s.Name() == "stockguard.v1.OrderService/PlaceOrder" && s.SpanKind() == trace.SpanKindServer {
						rpc = s
						return true
					}
				}
				return false
			})
			if rpc.SpanContext().TraceID().String() != clientTrace || rpc.Parent().SpanID().String() != clientSpan {
				t.Fatalf("RPC span trace %s parent %s; want the client's trace %s and span %s",
					rpc.SpanContext().TraceID(), rpc.Parent().SpanID(), clientTrace, clientSpan)
			}
			byID := map[trace.SpanID]sdktrace.ReadOnlySpan{}
			for _, s := range rec.Ended() {
				byID[s.SpanContext().SpanID()] = s
			}
			var lockQuery sdktrace.ReadOnlySpan
			for _, s := range rec.Ended() {
				if s.SpanContext().TraceID() != rpc.SpanContext().TraceID() || s.SpanKind() != trace.SpanKindClient {
					continue
				}
				for _, a := range s.Attributes() {
					if strings.HasPrefix(string(a.Key), "db.") && strings.Contains(a.Value.String(), "FOR UPDATE") {
						lockQuery = s
					}
				}
			}
			if lockQuery == nil {
				t.Fatalf("no SQL span with the FOR UPDATE statement in the purchase's trace; spans: %v", names(rec.Ended()))
			}
			// Walk up from the SQL span: it must descend from the RPC span.
			found := false
			for s := lockQuery; s != nil; s = byID[s.Parent().SpanID()] {
				if s.SpanContext().SpanID() == rpc.SpanContext().SpanID() {
					found = true
					break
				}
			}
			if !found {
				t.Fatalf("the lock query's span does not descend from the RPC span")
			}
			waitFor(t, 5*time.Second, "the broadcast span linked to the purchase", func() bool {
				for _, s := range rec.Ended() {
					if s.Name() != "stockguard.broadcast.publish" {
						continue
					}
					for _, l := range s.Links() {
						if l.SpanContext.TraceID().String() == clientTrace {
							return true
						}
					}
				}
				return false
			})
			waitFor(t, 5*time.Second, "the access-log line with the trace id", func() bool {
				return accessLine(t, logs.String(), clientTrace, p.name) != nil
			})
			line := accessLine(t, logs.String(), clientTrace, p.name)
			if line["sub"] != "alice" || line["code"] != "ok" || line["span_id"] == "" || line["procedure"] != "/stockguard.v1.OrderService/PlaceOrder" {
				t.Fatalf("access line = %v", line)
			}
		})
	}
	if strings.Contains(logs.String(), "Bearer ") || strings.Contains(logs.String(), srv.token(t, "alice", auth.RoleCustomer)[:20]) {
		t.Fatal("a token reached the logs")
	}
}

func names(spans []sdktrace.ReadOnlySpan) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name())
	}
	return out
}

// accessLine finds the JSON access-log line of a request in trace, over
// protocol (the access log's label), failing the test on any line that is
// not JSON.
func accessLine(t *testing.T, logs, traceID, protocol string) map[string]any {
	t.Helper()
	label := map[string]string{"grpc": "grpc", "grpc-web": "grpc_web", "connect": "connect", "connect-json": "connect", "rest": "rest"}[protocol]
	sc := bufio.NewScanner(strings.NewReader(logs))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var found map[string]any
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("log line is not JSON: %q", sc.Text())
		}
		if m["logger"] == "access" && m["trace_id"] == traceID && m["protocol"] == label {
			found = m
		}
	}
	return found
}

// The log level changes at runtime through the admin server.
func TestObservability_LogLevelChangesAtRuntime(t *testing.T) {
	lvl := zap.NewAtomicLevelAt(zap.InfoLevel)
	logs := &syncBuffer{}
	log := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), logs, lvl))
	srv := startServerWith(t, memoryStore, log, app.LogLevel(lvl))
	res, body := restDo(t, http.MethodPut, srv.adminBase+"/loglevel", map[string]string{"Content-Type": "application/json"}, strings.NewReader(`{"level":"debug"}`))
	if res.StatusCode != http.StatusOK || lvl.Level() != zap.DebugLevel {
		t.Fatalf("PUT /loglevel = %d %s; level now %s", res.StatusCode, body, lvl.Level())
	}
	res, body = restDo(t, http.MethodGet, srv.adminBase+"/loglevel", nil, nil)
	if res.StatusCode != http.StatusOK || !strings.Contains(string(body), `"debug"`) {
		t.Fatalf("GET /loglevel = %d %s", res.StatusCode, body)
	}
	log.Debug("now visible")
	if !strings.Contains(logs.String(), "now visible") {
		t.Fatal("a debug line was not written after switching to debug")
	}
}
