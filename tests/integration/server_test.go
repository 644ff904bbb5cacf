package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/fx"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/stockguard/stockguard/cmd/stockguard/app"
	stockguardv1 "github.com/stockguard/stockguard/gen/stockguard/v1"
	"github.com/stockguard/stockguard/gen/stockguard/v1/stockguardv1connect"
	"github.com/stockguard/stockguard/modules/broadcast"
	"github.com/stockguard/stockguard/platform/auth"
	"github.com/stockguard/stockguard/platform/config"
	"github.com/stockguard/stockguard/platform/httpserver"
	"github.com/stockguard/stockguard/transports/websocket"
)

const testSecret = "integration-test-secret-0123456789abcdef"

// store names the storage a test server runs on.
type store string

const (
	memoryStore   store = "memory"
	postgresStore store = "postgres"
)

var stores = []store{memoryStore, postgresStore}

// testServer is a running stockguard app.
type testServer struct {
	base      string // http://127.0.0.1:port of the API server
	adminBase string
	cfg       config.Config
	authority *auth.Authority
	hub       *broadcast.Hub
	ws        *websocket.Server
	stop      func() // stops the app now; safe to call twice
	registry  *prometheus.Registry
}

// startServer runs the real app on random loopback ports until t ends. For
// postgresStore it gets a fresh database.
func startServer(t *testing.T, s store, tweak ...func(*config.Config)) *testServer {
	t.Helper()
	return startServerWith(t, s, zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)), fx.Options(), tweak...)
}

// startServerWith is startServer with a chosen logger and extra fx options
// (for example a decorated tracer provider).
func startServerWith(t *testing.T, s store, log *zap.Logger, extra fx.Option, tweak ...func(*config.Config)) *testServer {
	t.Helper()
	cfg := config.Defaults()
	cfg.HTTPAddr, cfg.AdminAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.JWTSecret = testSecret
	cfg.SweepInterval = 50 * time.Millisecond
	cfg.DBMaxConns = 32
	cfg.RateLimitRPS = 0 // tests that exercise the limiter turn it on
	if s == postgresStore {
		cfg.DatabaseURL = pg.NewMigratedDatabase(t)
	}
	for _, f := range tweak {
		f(&cfg)
	}
	var api *httpserver.API
	var admin *httpserver.Admin
	var hub *broadcast.Hub
	var ws *websocket.Server
	var reg *prometheus.Registry
	fxApp := fx.New(app.Options(cfg, log), extra, fx.Populate(&api, &admin, &hub, &ws, &reg))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := fxApp.Start(ctx); err != nil {
		t.Fatalf("start app: %v", err)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := fxApp.Stop(ctx); err != nil {
				t.Errorf("stop app: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return &testServer{
		base:      "http://" + api.Addr().String(),
		adminBase: "http://" + admin.Addr().String(),
		cfg:       cfg,
		authority: auth.NewAuthority([]byte(testSecret)),
		hub:       hub,
		ws:        ws,
		stop:      stop,
		registry:  reg,
	}
}

func (s *testServer) token(t *testing.T, sub string, role auth.Role) string {
	t.Helper()
	tok, err := s.authority.Issue(sub, role, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// h2c is an HTTP/2-without-TLS client, as gRPC needs.
func h2cClient() *http.Client {
	tr := &http.Transport{
		MaxIdleConnsPerHost: 256,
	}
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	tr.Protocols = p
	return &http.Client{Transport: tr, Timeout: 60 * time.Second}
}

func http1Client() *http.Client {
	// Bounded, so that thousands of concurrent calls queue for a connection
	// instead of exhausting file descriptors.
	return &http.Client{Transport: &http.Transport{MaxConnsPerHost: 512, MaxIdleConnsPerHost: 512}, Timeout: 60 * time.Second}
}

// outcome is what a call came to, in protocol-neutral terms.
type outcome struct {
	Code   connect.Code // 0 on success
	Reason string       // google.rpc.ErrorInfo reason
	Meta   map[string]string
	Fields []string // google.rpc.BadRequest field names
}

func (o outcome) String() string {
	if o.Code == 0 {
		return "ok"
	}
	return fmt.Sprintf("%s/%s", o.Code, o.Reason)
}

// apiClient calls the API over one protocol as one caller.
type apiClient interface {
	CreateItem(ctx context.Context, req *stockguardv1.CreateItemRequest) (*stockguardv1.Item, outcome)
	GetItem(ctx context.Context, id string) (*stockguardv1.Item, outcome)
	PlaceOrder(ctx context.Context, req *stockguardv1.PlaceOrderRequest) (*stockguardv1.Order, outcome)
	GetOrder(ctx context.Context, id string) (*stockguardv1.Order, outcome)
	ConfirmOrder(ctx context.Context, id string) (*stockguardv1.Order, outcome)
	CancelOrder(ctx context.Context, id string) (*stockguardv1.Order, outcome)
}

// protocol builds an apiClient for a server and a bearer token.
type protocol struct {
	name string
	dial func(base, token string) apiClient
}

var protocols = []protocol{
	{"grpc", func(b, tok string) apiClient { return newRPCClient(b, tok, h2cClient(), connect.WithGRPC()) }},
	{"grpc-web", func(b, tok string) apiClient { return newRPCClient(b, tok, http1Client(), connect.WithGRPCWeb()) }},
	{"connect", func(b, tok string) apiClient { return newRPCClient(b, tok, http1Client()) }},
	{"connect-json", func(b, tok string) apiClient { return newRPCClient(b, tok, http1Client(), connect.WithProtoJSON()) }},
	{"rest", func(b, tok string) apiClient { return &restClient{base: b, token: tok, http: http1Client()} }},
}

type rpcClient struct {
	inv stockguardv1connect.InventoryServiceClient
	ord stockguardv1connect.OrderServiceClient
}

type bearer string

func (b bearer) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if b != "" {
			req.Header().Set("Authorization", "Bearer "+string(b))
		}
		return next(ctx, req)
	}
}

func (b bearer) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		conn := next(ctx, spec)
		if b != "" {
			conn.RequestHeader().Set("Authorization", "Bearer "+string(b))
		}
		return conn
	}
}

func (b bearer) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

// newRPCClientWith dials like protocol p, with extra interceptors.
func newRPCClientWith(base, token string, p protocol, extra ...connect.Interceptor) *rpcClient {
	hc := http1Client()
	var opts []connect.ClientOption
	switch p.name {
	case "grpc":
		hc, opts = h2cClient(), []connect.ClientOption{connect.WithGRPC()}
	case "grpc-web":
		opts = []connect.ClientOption{connect.WithGRPCWeb()}
	case "connect-json":
		opts = []connect.ClientOption{connect.WithProtoJSON()}
	}
	opts = append(opts, connect.WithInterceptors(extra...))
	return newRPCClient(base, token, hc, opts...)
}

func newRPCClient(base, token string, hc *http.Client, opts ...connect.ClientOption) *rpcClient {
	opts = append(opts, connect.WithInterceptors(bearer(token)))
	return &rpcClient{
		inv: stockguardv1connect.NewInventoryServiceClient(hc, base, opts...),
		ord: stockguardv1connect.NewOrderServiceClient(hc, base, opts...),
	}
}

func rpcOutcome(err error) outcome {
	if err == nil {
		return outcome{}
	}
	var ce *connect.Error
	if !errors.As(err, &ce) {
		return outcome{Code: connect.CodeUnknown, Reason: "CLIENT: " + err.Error()}
	}
	o := outcome{Code: ce.Code()}
	if ce.Code() == connect.CodeUnavailable && len(ce.Details()) == 0 {
		// The server never answers unavailable without an ErrorInfo: this
		// call failed in transport (a closed connection, a refused
		// stream). Keep what happened, as the REST client does.
		o.Reason = "CLIENT: " + ce.Message()
	}
	for _, d := range ce.Details() {
		v, derr := d.Value()
		if derr != nil {
			continue
		}
		switch m := v.(type) {
		case *errdetails.ErrorInfo:
			o.Reason, o.Meta = m.GetReason(), m.GetMetadata()
		case *errdetails.BadRequest:
			for _, f := range m.GetFieldViolations() {
				o.Fields = append(o.Fields, f.GetField())
			}
		}
	}
	return o
}

func unary[T any](res *connect.Response[T], err error) (*T, outcome) {
	if err != nil {
		return nil, rpcOutcome(err)
	}
	return res.Msg, outcome{}
}

func (c *rpcClient) CreateItem(ctx context.Context, req *stockguardv1.CreateItemRequest) (*stockguardv1.Item, outcome) {
	res, o := unary(c.inv.CreateItem(ctx, connect.NewRequest(req)))
	return res.GetItem(), o
}

func (c *rpcClient) GetItem(ctx context.Context, id string) (*stockguardv1.Item, outcome) {
	res, o := unary(c.inv.GetItem(ctx, connect.NewRequest(&stockguardv1.GetItemRequest{ItemId: id})))
	return res.GetItem(), o
}

func (c *rpcClient) PlaceOrder(ctx context.Context, req *stockguardv1.PlaceOrderRequest) (*stockguardv1.Order, outcome) {
	res, o := unary(c.ord.PlaceOrder(ctx, connect.NewRequest(req)))
	return res.GetOrder(), o
}

func (c *rpcClient) GetOrder(ctx context.Context, id string) (*stockguardv1.Order, outcome) {
	res, o := unary(c.ord.GetOrder(ctx, connect.NewRequest(&stockguardv1.GetOrderRequest{OrderId: id})))
	return res.GetOrder(), o
}

func (c *rpcClient) ConfirmOrder(ctx context.Context, id string) (*stockguardv1.Order, outcome) {
	res, o := unary(c.ord.ConfirmOrder(ctx, connect.NewRequest(&stockguardv1.ConfirmOrderRequest{OrderId: id})))
	return res.GetOrder(), o
}

func (c *rpcClient) CancelOrder(ctx context.Context, id string) (*stockguardv1.Order, outcome) {
	res, o := unary(c.ord.CancelOrder(ctx, connect.NewRequest(&stockguardv1.CancelOrderRequest{OrderId: id})))
	return res.GetOrder(), o
}

// restClient speaks the REST binding with plain net/http and JSON.
type restClient struct {
	base, token string
	http        *http.Client
}

// restError is the documented REST error body (google.rpc.Status as JSON).
type restError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Details []struct {
		Type            string            `json:"@type"`
		Reason          string            `json:"reason"`
		Metadata        map[string]string `json:"metadata"`
		FieldViolations []struct {
			Field string `json:"field"`
		} `json:"fieldViolations"`
	} `json:"details"`
}

func (c *restClient) do(ctx context.Context, method, path string, body proto.Message, out proto.Message) outcome {
	var rd io.Reader
	if body != nil {
		b, err := protojson.Marshal(body)
		if err != nil {
			return outcome{Code: connect.CodeUnknown, Reason: "CLIENT: " + err.Error()}
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return outcome{Code: connect.CodeUnknown, Reason: "CLIENT: " + err.Error()}
	}
	req.Header.Set("Content-Type", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	res, err := c.http.Do(req)
	if err != nil {
		return outcome{Code: connect.CodeUnavailable, Reason: "CLIENT: " + err.Error()}
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		return outcome{Code: connect.CodeUnavailable, Reason: "CLIENT: " + err.Error()}
	}
	if res.StatusCode == http.StatusOK {
		if err := protojson.Unmarshal(raw, out); err != nil {
			return outcome{Code: connect.CodeUnknown, Reason: "CLIENT: bad body: " + err.Error()}
		}
		return outcome{}
	}
	var e restError
	if err := json.Unmarshal(raw, &e); err != nil {
		return outcome{Code: connect.CodeUnknown, Reason: fmt.Sprintf("CLIENT: HTTP %d with body %q", res.StatusCode, raw)}
	}
	o := outcome{Code: connect.Code(e.Code)}
	for _, d := range e.Details {
		switch {
		case strings.HasSuffix(d.Type, "google.rpc.ErrorInfo"):
			o.Reason, o.Meta = d.Reason, d.Metadata
		case strings.HasSuffix(d.Type, "google.rpc.BadRequest"):
			for _, f := range d.FieldViolations {
				o.Fields = append(o.Fields, f.Field)
			}
		}
	}
	return o
}

func (c *restClient) CreateItem(ctx context.Context, req *stockguardv1.CreateItemRequest) (*stockguardv1.Item, outcome) {
	var out stockguardv1.CreateItemResponse
	o := c.do(ctx, http.MethodPost, "/v1/items", req, &out)
	return out.GetItem(), o
}

func (c *restClient) GetItem(ctx context.Context, id string) (*stockguardv1.Item, outcome) {
	var out stockguardv1.GetItemResponse
	o := c.do(ctx, http.MethodGet, "/v1/items/"+id, nil, &out)
	return out.GetItem(), o
}

func (c *restClient) PlaceOrder(ctx context.Context, req *stockguardv1.PlaceOrderRequest) (*stockguardv1.Order, outcome) {
	var out stockguardv1.PlaceOrderResponse
	o := c.do(ctx, http.MethodPost, "/v1/orders", req, &out)
	return out.GetOrder(), o
}

func (c *restClient) GetOrder(ctx context.Context, id string) (*stockguardv1.Order, outcome) {
	var out stockguardv1.GetOrderResponse
	o := c.do(ctx, http.MethodGet, "/v1/orders/"+id, nil, &out)
	return out.GetOrder(), o
}

func (c *restClient) ConfirmOrder(ctx context.Context, id string) (*stockguardv1.Order, outcome) {
	var out stockguardv1.ConfirmOrderResponse
	o := c.do(ctx, http.MethodPost, "/v1/orders/"+id+":confirm", &stockguardv1.ConfirmOrderRequest{}, &out)
	return out.GetOrder(), o
}

func (c *restClient) CancelOrder(ctx context.Context, id string) (*stockguardv1.Order, outcome) {
	var out stockguardv1.CancelOrderResponse
	o := c.do(ctx, http.MethodPost, "/v1/orders/"+id+":cancel", &stockguardv1.CancelOrderRequest{}, &out)
	return out.GetOrder(), o
}
