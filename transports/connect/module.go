package connect

import (
	"context"
	"net/http"
	"strings"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"connectrpc.com/grpcreflect"
	"connectrpc.com/otelconnect"
	"connectrpc.com/vanguard"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/fx"
	"go.uber.org/zap"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/stockguard/stockguard/gen/stockguard/v1/stockguardv1connect"
	"github.com/stockguard/stockguard/platform/auth"
	"github.com/stockguard/stockguard/platform/config"
	"github.com/stockguard/stockguard/platform/health"
	"github.com/stockguard/stockguard/platform/httpserver"
	"github.com/stockguard/stockguard/platform/tracing"
	"github.com/stockguard/stockguard/transports/connect/apidocs"
)

// Message size limits, counted after decompression, so a compressed bomb is
// refused as soon as it grows past them.
const (
	MaxRequestBytes  = 1 << 20
	MaxResponseBytes = 8 << 20
)

// ServiceNames are the fully-qualified names of the services served.
var ServiceNames = []string{
	stockguardv1connect.InventoryServiceName,
	stockguardv1connect.OrderServiceName,
	stockguardv1connect.StockServiceName,
}

// Observability is what the handlers report to: all optional.
type Observability struct {
	Metrics *Metrics
	Tracer  trace.TracerProvider
	Log     *zap.Logger
}

// HandlerOptions are the options every service handler gets, outermost
// first: tracing (continuing the caller's W3C trace), metrics and access
// log, auth, the per-caller rate limit (nil: none), panic recovery, and
// the message size limits.
func HandlerOptions(v Verifier, limiter *RateLimiter, obs Observability) ([]connect.HandlerOption, error) {
	if obs.Log == nil {
		obs.Log = zap.NewNop()
	}
	var interceptors []connect.Interceptor
	if obs.Tracer != nil {
		otel, err := otelconnect.NewInterceptor(otelconnect.WithTracerProvider(obs.Tracer),
			otelconnect.WithPropagator(tracing.Propagator()), otelconnect.WithTrustRemote(), otelconnect.WithoutMetrics())
		if err != nil {
			return nil, err
		}
		interceptors = append(interceptors, otel)
	}
	interceptors = append(interceptors, observeInterceptor{metrics: obs.Metrics}, &authInterceptor{verifier: v})
	if limiter != nil {
		interceptors = append(interceptors, rateInterceptor{limiter: limiter})
	}
	return []connect.HandlerOption{
		connect.WithInterceptors(interceptors...),
		connect.WithRecover(recoverPanic(obs.Log)),
		connect.WithReadMaxBytes(MaxRequestBytes),
		connect.WithSendMaxBytes(MaxResponseBytes),
		// Most answers are a few hundred bytes: compressing them costs more
		// CPU than it saves (it was 8% of a loaded server's profile).
		connect.WithCompressMinBytes(4096),
	}, nil
}

// NewAPIHandler serves the three services over gRPC, gRPC-Web, Connect and
// REST (from the google.api.http bindings). Binary protobuf, whatever the
// protocol, goes straight to the Connect handlers, which speak it natively;
// JSON and REST go through a vanguard transcoder, so every JSON answer is
// written one way.
func NewAPIHandler(inv *InventoryHandler, ord *OrderHandler, stock *StockHandler, v Verifier, limiter *RateLimiter, obs Observability) (http.Handler, error) {
	opts, err := HandlerOptions(v, limiter, obs)
	if err != nil {
		return nil, err
	}
	direct := http.NewServeMux()
	var services []*vanguard.Service
	for _, mount := range []func() (string, http.Handler){
		func() (string, http.Handler) { return stockguardv1connect.NewInventoryServiceHandler(inv, opts...) },
		func() (string, http.Handler) { return stockguardv1connect.NewOrderServiceHandler(ord, opts...) },
		func() (string, http.Handler) { return stockguardv1connect.NewStockServiceHandler(stock, opts...) },
	} {
		path, h := mount()
		direct.Handle(path, h)
		services = append(services, vanguard.NewService(path, h))
	}
	transcoder, err := vanguard.NewTranscoder(services,
		// Handlers speak binary protobuf; the transcoder writes every JSON
		// answer itself, so every protocol shows the same JSON: zero values
		// included ("available": 0). Unknown fields are ignored, as protojson
		// clients of a newer contract expect.
		vanguard.WithDefaultServiceOptions(vanguard.WithTargetCodecs(vanguard.CodecProto)),
		vanguard.WithCodec(func(res vanguard.TypeResolver) vanguard.Codec {
			return jsonCodec{vanguard.JSONCodec{
				MarshalOptions:   protojson.MarshalOptions{Resolver: res, EmitDefaultValues: true},
				UnmarshalOptions: protojson.UnmarshalOptions{Resolver: res, DiscardUnknown: true},
			}}
		}),
	)
	if err != nil {
		return nil, err
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && isBinaryProto(r.Header.Get("Content-Type")) {
			// Nothing to transcode: skip the transcoder's per-call work.
			direct.ServeHTTP(w, r)
			return
		}
		if isConnectJSONWithoutVersion(r) {
			// The transcoder takes a JSON POST without this header for REST,
			// and no REST route has a procedure's path: curl users would get
			// a bare 404. The path can only mean a Connect unary call.
			r.Header.Set("Connect-Protocol-Version", "1")
		}
		if strings.HasPrefix(r.URL.Path, "/v1/") {
			w = &restStatusWriter{ResponseWriter: w}
		}
		transcoder.ServeHTTP(w, r)
	}), nil
}

// restStatusWriter answers a REST call refused for its size with 413
// Content Too Large instead of the 429 that resource_exhausted maps to: a
// 429 tells a client to try the same request again later, and a body that
// is too big stays too big. Every resource_exhausted of our own (rate limit,
// overload) carries Retry-After; the size limits (the message and body
// caps, the decompressed-size cap) do not, and that tells them apart. The
// JSON body still says code 8, resource_exhausted.
type restStatusWriter struct{ http.ResponseWriter }

func (w *restStatusWriter) WriteHeader(code int) {
	if code == http.StatusTooManyRequests && w.Header().Get("Retry-After") == "" {
		code = http.StatusRequestEntityTooLarge
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *restStatusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *restStatusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// isConnectJSONWithoutVersion reports whether r is a JSON POST to one of our
// procedures (/stockguard.v1.Service/Method) that left out the
// Connect-Protocol-Version header.
func isConnectJSONWithoutVersion(r *http.Request) bool {
	if r.Method != http.MethodPost || r.Header.Get("Connect-Protocol-Version") != "" {
		return false
	}
	if mediaType, _, _ := strings.Cut(r.Header.Get("Content-Type"), ";"); strings.TrimSpace(mediaType) != "application/json" {
		return false
	}
	for _, name := range ServiceNames {
		if strings.HasPrefix(r.URL.Path, "/"+name+"/") {
			return true
		}
	}
	return false
}

// isBinaryProto reports whether a request's content type is binary
// protobuf under gRPC, gRPC-Web or Connect (unary or streaming).
func isBinaryProto(contentType string) bool {
	switch contentType {
	case "application/grpc", "application/grpc+proto", "application/grpc-web", "application/grpc-web+proto",
		"application/proto", "application/connect+proto":
		return true
	}
	return false
}

// readinessChecker answers grpc.health.v1 from the readiness checks, for
// the whole server ("") and for each service.
type readinessChecker struct{ checker *health.Checker }

func (r readinessChecker) Check(ctx context.Context, req *grpchealth.CheckRequest) (*grpchealth.CheckResponse, error) {
	known := req.Service == ""
	for _, n := range ServiceNames {
		known = known || req.Service == n
	}
	if !known {
		return nil, connect.NewError(connect.CodeNotFound, nil)
	}
	if failed := r.checker.Run(ctx); len(failed) > 0 {
		return &grpchealth.CheckResponse{Status: grpchealth.StatusNotServing}, nil
	}
	return &grpchealth.CheckResponse{Status: grpchealth.StatusServing}, nil
}

type routeParams struct {
	fx.In
	Config    config.Config
	Inventory *InventoryHandler
	Orders    *OrderHandler
	Stock     *StockHandler
	Authority *auth.Authority
	Checker   *health.Checker
	Log       *zap.Logger
	Metrics   *Metrics
	Tracer    trace.TracerProvider
}

type routeResults struct {
	fx.Out
	Routes []httpserver.Route `group:"api_routes,flatten"`
}

func routes(p routeParams) (routeResults, error) {
	api, err := NewAPIHandler(p.Inventory, p.Orders.WithMetrics(p.Metrics), p.Stock, p.Authority,
		NewRateLimiter(p.Config.RateLimitRPS, p.Config.RateLimitBurst),
		Observability{Metrics: p.Metrics, Tracer: p.Tracer, Log: p.Log})
	if err != nil {
		return routeResults{}, err
	}
	reflector := grpcreflect.NewStaticReflector(append(ServiceNames, grpchealth.HealthV1ServiceName)...)
	var out routeResults
	add := func(pattern string, h http.Handler) {
		out.Routes = append(out.Routes, httpserver.Route{Pattern: pattern, Handler: h})
	}
	// Caps the whole body, whatever the protocol, before any decoding.
	// MaxBytesHandler goes outermost so that it sees the server's own
	// ResponseWriter and can close a connection whose body was too large.
	add("/", http.MaxBytesHandler(AccessLog(p.Log, CORS(p.Config.CORSOrigins)(streamingDeadlines(api))), MaxRequestBytes+64<<10))
	add(grpcreflect.NewHandlerV1(reflector))
	add(grpcreflect.NewHandlerV1Alpha(reflector))
	add(grpchealth.NewHandler(readinessChecker{p.Checker}))
	for pattern, h := range apidocs.Routes() {
		add(pattern, h)
	}
	return out, nil
}

// Module serves the API over every protocol on the API server. It needs
// the inventory and orders services, an auth.Authority and a health.Checker.
var Module = fx.Module("transport.connect",
	fx.Provide(NewInventoryHandler, NewOrderHandler, NewStockHandler, NewMetrics, routes),
)
