package integration

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	stockguardv1 "github.com/stockguard/stockguard/gen/stockguard/v1"
	"github.com/stockguard/stockguard/platform/auth"
	"github.com/stockguard/stockguard/platform/config"
)

// One table of cases, each run through every protocol, each expecting the
// same code, reason and field violations.
func TestProtocols_SameOutcomeEverywhere(t *testing.T) {
	srv := startServer(t, memoryStore)
	setup := protocols[0].dial(srv.base, srv.token(t, "ops", auth.RoleAdmin))
	item := createItem(t, setup, "TABLE", 5, 2)
	missing := "0192f0c4-6f1e-7a4b-9c1d-2e3f4a5b6c7d"

	type call func(ctx context.Context, c apiClient) outcome
	cases := []struct {
		name  string
		token string // "admin", "alice", "" (none)
		call  call
		want  outcome
	}{
		{"create with bad fields", "admin", func(ctx context.Context, c apiClient) outcome {
			_, o := c.CreateItem(ctx, &stockguardv1.CreateItemRequest{Sku: "has space", Name: "", InitialStock: -1})
			return o
		}, outcome{Code: connect.CodeInvalidArgument, Reason: "INVALID_ARGUMENT", Fields: []string{"sku", "name", "initial_stock"}}},
		{"create a taken sku", "admin", func(ctx context.Context, c apiClient) outcome {
			_, o := c.CreateItem(ctx, &stockguardv1.CreateItemRequest{Sku: "TABLE", Name: "again"})
			return o
		}, outcome{Code: connect.CodeAlreadyExists, Reason: "SKU_EXISTS"}},
		{"create as customer", "alice", func(ctx context.Context, c apiClient) outcome {
			_, o := c.CreateItem(ctx, &stockguardv1.CreateItemRequest{Sku: "NOPE", Name: "n"})
			return o
		}, outcome{Code: connect.CodePermissionDenied, Reason: "PERMISSION_DENIED"}},
		{"get a missing item", "", func(ctx context.Context, c apiClient) outcome {
			_, o := c.GetItem(ctx, missing)
			return o
		}, outcome{Code: connect.CodeNotFound, Reason: "ITEM_NOT_FOUND"}},
		{"get with a bad id", "", func(ctx context.Context, c apiClient) outcome {
			_, o := c.GetItem(ctx, "not-a-uuid")
			return o
		}, outcome{Code: connect.CodeInvalidArgument, Reason: "INVALID_ARGUMENT", Fields: []string{"item_id"}}},
		{"order without a token", "", func(ctx context.Context, c apiClient) outcome {
			_, o := c.PlaceOrder(ctx, buy(item.GetId(), 1))
			return o
		}, outcome{Code: connect.CodeUnauthenticated, Reason: "UNAUTHENTICATED"}},
		{"order with bad lines", "alice", func(ctx context.Context, c apiClient) outcome {
			_, o := c.PlaceOrder(ctx, &stockguardv1.PlaceOrderRequest{Lines: []*stockguardv1.OrderLine{{ItemId: "x", Quantity: 0}}, HoldSeconds: -1})
			return o
		}, outcome{Code: connect.CodeInvalidArgument, Reason: "INVALID_ARGUMENT", Fields: []string{"lines[0].item_id", "lines[0].quantity", "hold_seconds"}}},
		{"order past the per-customer limit", "alice", func(ctx context.Context, c apiClient) outcome {
			_, o := c.PlaceOrder(ctx, buy(item.GetId(), 3))
			return o
		}, outcome{Code: connect.CodeFailedPrecondition, Reason: "LIMIT_EXCEEDED"}},
		{"order of a missing item", "alice", func(ctx context.Context, c apiClient) outcome {
			_, o := c.PlaceOrder(ctx, buy(missing, 1))
			return o
		}, outcome{Code: connect.CodeNotFound, Reason: "ITEM_NOT_FOUND"}},
		{"get a missing order", "alice", func(ctx context.Context, c apiClient) outcome {
			_, o := c.GetOrder(ctx, missing)
			return o
		}, outcome{Code: connect.CodeNotFound, Reason: "ORDER_NOT_FOUND"}},
	}
	tokens := map[string]string{"admin": srv.token(t, "ops", auth.RoleAdmin), "alice": srv.token(t, "alice", auth.RoleCustomer), "": ""}
	for _, p := range protocols {
		for _, tc := range cases {
			t.Run(p.name+"/"+tc.name, func(t *testing.T) {
				got := tc.call(context.Background(), p.dial(srv.base, tokens[tc.token]))
				if got.Code != tc.want.Code || got.Reason != tc.want.Reason || !slices.Equal(got.Fields, tc.want.Fields) {
					t.Fatalf("got %s fields %v, want %s fields %v", got, got.Fields, tc.want, tc.want.Fields)
				}
			})
		}
	}
}

// A customer can never read, confirm or cancel another customer's order,
// over any protocol; an admin can read and cancel it but not confirm it.
func TestProtocols_OrderOwnershipMatrix(t *testing.T) {
	srv := startServer(t, memoryStore)
	admin := protocols[0].dial(srv.base, srv.token(t, "ops", auth.RoleAdmin))
	item := createItem(t, admin, "BOLA", 1000, 0)
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			ctx := context.Background()
			alice := p.dial(srv.base, srv.token(t, "alice", auth.RoleCustomer))
			bob := p.dial(srv.base, srv.token(t, "bob", auth.RoleCustomer))
			padmin := p.dial(srv.base, srv.token(t, "ops", auth.RoleAdmin))
			hold, o := alice.PlaceOrder(ctx, &stockguardv1.PlaceOrderRequest{Lines: buy(item.GetId(), 1).Lines, HoldSeconds: 600})
			if o.Code != 0 {
				t.Fatal(o)
			}
			id := hold.GetId()
			checks := []struct {
				who    string
				op     func() outcome
				code   connect.Code
				reason string
			}{
				{"bob reads", func() outcome { _, o := bob.GetOrder(ctx, id); return o }, connect.CodeNotFound, "ORDER_NOT_FOUND"},
				{"bob confirms", func() outcome { _, o := bob.ConfirmOrder(ctx, id); return o }, connect.CodeNotFound, "ORDER_NOT_FOUND"},
				{"bob cancels", func() outcome { _, o := bob.CancelOrder(ctx, id); return o }, connect.CodeNotFound, "ORDER_NOT_FOUND"},
				{"admin reads", func() outcome { _, o := padmin.GetOrder(ctx, id); return o }, 0, ""},
				{"admin confirms", func() outcome { _, o := padmin.ConfirmOrder(ctx, id); return o }, connect.CodePermissionDenied, "NOT_ORDER_OWNER"},
				{"alice reads", func() outcome { _, o := alice.GetOrder(ctx, id); return o }, 0, ""},
				{"admin cancels", func() outcome { _, o := padmin.CancelOrder(ctx, id); return o }, 0, ""},
			}
			for _, c := range checks {
				if got := c.op(); got.Code != c.code || got.Reason != c.reason {
					t.Fatalf("%s: %s, want %s/%s", c.who, got, c.code, c.reason)
				}
			}
			got, _ := alice.GetOrder(ctx, id)
			if got.GetStatus() != stockguardv1.OrderStatus_ORDER_STATUS_CANCELLED {
				t.Fatalf("order after the matrix = %v", got.GetStatus())
			}
		})
	}
}

func restDo(t *testing.T, method, url string, header map[string]string, body io.Reader) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, b
}

func TestREST_IdempotencyKeyHeader(t *testing.T) {
	srv := startServer(t, memoryStore)
	admin := protocols[0].dial(srv.base, srv.token(t, "ops", auth.RoleAdmin))
	item := createItem(t, admin, "HDR", 10, 0)
	hdr := map[string]string{"Authorization": "Bearer " + srv.token(t, "alice", auth.RoleCustomer), "Content-Type": "application/json", "Idempotency-Key": "hdr-1"}
	body := fmt.Sprintf(`{"lines":[{"itemId":%q,"quantity":2}]}`, item.GetId())
	var ids []string
	for range 2 {
		res, b := restDo(t, http.MethodPost, srv.base+"/v1/orders", hdr, strings.NewReader(body))
		if res.StatusCode != http.StatusOK {
			t.Fatalf("POST /v1/orders = %d %s", res.StatusCode, b)
		}
		var out struct {
			Order struct{ ID, IdempotencyKey string }
		}
		if err := json.Unmarshal(b, &out); err != nil {
			t.Fatal(err)
		}
		if out.Order.IdempotencyKey != "hdr-1" {
			t.Fatalf("order key = %q", out.Order.IdempotencyKey)
		}
		ids = append(ids, out.Order.ID)
	}
	if ids[0] != ids[1] {
		t.Fatalf("the retry made a second order: %v", ids)
	}
	got, _ := admin.GetItem(context.Background(), item.GetId())
	if got.GetSold() != 2 {
		t.Fatalf("sold = %d, want 2", got.GetSold())
	}
	conflict := fmt.Sprintf(`{"lines":[{"itemId":%q,"quantity":2}],"idempotencyKey":"other"}`, item.GetId())
	res, b := restDo(t, http.MethodPost, srv.base+"/v1/orders", hdr, strings.NewReader(conflict))
	if res.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), "idempotency_key") {
		t.Fatalf("header and body keys differ: %d %s", res.StatusCode, b)
	}
}

// curl users call Connect procedures with JSON and often leave out the
// Connect-Protocol-Version header; the call must still be served as Connect,
// not answered 404 as an unknown REST path.
func TestConnectJSON_WithoutProtocolHeader(t *testing.T) {
	srv := startServer(t, memoryStore)
	admin := protocols[0].dial(srv.base, srv.token(t, "ops", auth.RoleAdmin))
	item := createItem(t, admin, "NOHDR", 7, 0)
	body := fmt.Sprintf(`{"itemId":%q}`, item.GetId())
	for _, header := range []map[string]string{
		{"Content-Type": "application/json"},
		{"Content-Type": "application/json; charset=utf-8"},
		{"Content-Type": "application/json", "Connect-Protocol-Version": "1"},
	} {
		res, b := restDo(t, http.MethodPost, srv.base+"/stockguard.v1.InventoryService/GetItem", header, strings.NewReader(body))
		if res.StatusCode != http.StatusOK || !strings.Contains(string(b), `"available":7`) {
			t.Fatalf("%v: %d %.300s", header, res.StatusCode, b)
		}
	}
	// An unknown procedure is still not found.
	res, _ := restDo(t, http.MethodPost, srv.base+"/stockguard.v1.InventoryService/NoSuchMethod", map[string]string{"Content-Type": "application/json"}, strings.NewReader(`{}`))
	if res.StatusCode != http.StatusNotFound {
		t.Fatalf("unknown procedure: %d, want 404", res.StatusCode)
	}
}

func TestAbuse_BodiesThatAreTooBigOrBroken(t *testing.T) {
	srv := startServer(t, memoryStore)
	admin := map[string]string{"Authorization": "Bearer " + srv.token(t, "ops", auth.RoleAdmin), "Content-Type": "application/json"}
	connectJSON := map[string]string{"Authorization": admin["Authorization"], "Content-Type": "application/json", "Connect-Protocol-Version": "1"}
	big := `{"sku":"A","name":"` + strings.Repeat("a", 3<<20) + `"}`
	var bomb bytes.Buffer
	zw := gzip.NewWriter(&bomb)
	_, _ = zw.Write([]byte(`{"sku":"A","name":"` + strings.Repeat("a", 20<<20) + `"}`))
	_ = zw.Close()
	withGzip := func(h map[string]string) map[string]string {
		out := map[string]string{"Content-Encoding": "gzip"}
		for k, v := range h {
			out[k] = v
		}
		return out
	}
	cases := []struct {
		name   string
		url    string
		header map[string]string
		body   []byte
		status int
		code   string // JSON "code" as number (REST) or name (Connect)
	}{
		{"REST oversized body", "/v1/items", admin, []byte(big), http.StatusRequestEntityTooLarge, "8"},
		{"Connect oversized body", "/stockguard.v1.InventoryService/CreateItem", connectJSON, []byte(big), http.StatusTooManyRequests, `"resource_exhausted"`},
		{"REST truncated JSON", "/v1/items", admin, []byte(`{"sku":`), http.StatusBadRequest, "3"},
		{"Connect truncated JSON", "/stockguard.v1.InventoryService/CreateItem", connectJSON, []byte(`{"sku":`), http.StatusBadRequest, `"invalid_argument"`},
		{"REST wrong JSON type", "/v1/items", admin, []byte(`{"initialStock":"lots"}`), http.StatusBadRequest, "3"},
		{"REST gzip bomb", "/v1/items", withGzip(admin), bomb.Bytes(), http.StatusRequestEntityTooLarge, "8"},
		{"Connect gzip bomb", "/stockguard.v1.InventoryService/CreateItem", withGzip(connectJSON), bomb.Bytes(), http.StatusTooManyRequests, `"resource_exhausted"`},
	}
	if bomb.Len() > 100<<10 {
		t.Fatalf("the bomb is %d bytes compressed; it should be tiny", bomb.Len())
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res, b := restDo(t, http.MethodPost, srv.base+tc.url, tc.header, bytes.NewReader(tc.body))
			var e struct {
				Code json.RawMessage `json:"code"`
			}
			_ = json.Unmarshal(b, &e)
			if res.StatusCode != tc.status || string(e.Code) != tc.code {
				t.Fatalf("status %d code %s, want %d %s; body %.200s", res.StatusCode, e.Code, tc.status, tc.code, b)
			}
		})
	}
}

func TestAbuse_SlowHeadersAreCutOff(t *testing.T) {
	srv := startServer(t, memoryStore, func(c *config.Config) { c.ReadHeaderTimeout = 300 * time.Millisecond })
	conn, err := net.Dial("tcp", strings.TrimPrefix(srv.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("GET /v1/items HTTP/1.1\r\nHost: x\r\n")); err != nil { // never finishes
		t.Fatal(err)
	}
	began := time.Now()
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err = io.ReadAll(conn)
	if err != nil {
		t.Fatalf("read: %v (the server did not close the connection)", err)
	}
	if waited := time.Since(began); waited > 5*time.Second {
		t.Fatalf("the server closed a slow-header connection after %s; the limit is 300ms", waited)
	}
}

func TestAbuse_CORSPreflights(t *testing.T) {
	srv := startServer(t, memoryStore, func(c *config.Config) { c.CORSOrigins = []string{"https://shop.example.com"} })
	preflight := func(origin, path string) *http.Response {
		res, _ := restDo(t, http.MethodOptions, srv.base+path, map[string]string{
			"Origin": origin, "Access-Control-Request-Method": "POST",
			"Access-Control-Request-Headers": "authorization,connect-protocol-version,content-type,x-grpc-web", // as browsers send it: sorted, lower case
		}, nil)
		return res
	}
	ok := preflight("https://shop.example.com", "/stockguard.v1.OrderService/PlaceOrder")
	if ok.Header.Get("Access-Control-Allow-Origin") != "https://shop.example.com" ||
		!strings.Contains(strings.ToLower(ok.Header.Get("Access-Control-Allow-Headers")), "authorization") ||
		ok.Header.Get("Access-Control-Allow-Credentials") != "" {
		t.Fatalf("allowed origin preflight: %d %v", ok.StatusCode, ok.Header)
	}
	foreign := preflight("https://evil.example", "/v1/orders")
	if foreign.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("foreign origin was allowed: %v", foreign.Header)
	}
	res, _ := restDo(t, http.MethodGet, srv.base+"/v1/items", map[string]string{"Origin": "https://shop.example.com"}, nil)
	if exp := res.Header.Get("Access-Control-Expose-Headers"); !strings.Contains(exp, "Grpc-Status") {
		t.Fatalf("exposed headers = %q, want the gRPC-Web ones", exp)
	}

	closed := startServer(t, memoryStore) // no origins configured
	none := func() *http.Response {
		r, _ := restDo(t, http.MethodOptions, closed.base+"/v1/items", map[string]string{"Origin": "https://shop.example.com", "Access-Control-Request-Method": "GET"}, nil)
		return r
	}()
	if none.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("with no origins configured a preflight was allowed: %v", none.Header)
	}
}

func TestAbuse_RateLimitPerCaller(t *testing.T) {
	srv := startServer(t, memoryStore, func(c *config.Config) { c.RateLimitRPS, c.RateLimitBurst = 1, 5 })
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			alice := p.dial(srv.base, srv.token(t, "alice-"+p.name, auth.RoleCustomer))
			var last outcome
			for range 6 {
				_, last = alice.GetOrder(context.Background(), "0192f0c4-6f1e-7a4b-9c1d-2e3f4a5b6c7d")
			}
			if last.Code != connect.CodeResourceExhausted || last.Reason != "RATE_LIMITED" || last.Meta["retry_after_seconds"] == "" {
				t.Fatalf("sixth call in a burst of 5 = %s %v", last, last.Meta)
			}
			bob := p.dial(srv.base, srv.token(t, "bob-"+p.name, auth.RoleCustomer))
			if _, o := bob.GetOrder(context.Background(), "0192f0c4-6f1e-7a4b-9c1d-2e3f4a5b6c7d"); o.Code == connect.CodeResourceExhausted {
				t.Fatal("another customer was limited by alice's calls")
			}
		})
	}
	res, _ := restDo(t, http.MethodGet, srv.base+"/v1/orders", map[string]string{"Authorization": "Bearer " + srv.token(t, "alice-rest", auth.RoleCustomer)}, nil)
	if res.StatusCode != http.StatusTooManyRequests || res.Header.Get("Retry-After") == "" {
		t.Fatalf("REST over the limit = %d, Retry-After %q; want 429 with Retry-After", res.StatusCode, res.Header.Get("Retry-After"))
	}
}
