package connect

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
)

// Metrics are the API's RED metrics and order outcomes. Labels are bounded:
// service and method come from the contract, protocol from a fixed set,
// code from Connect's codes, reason from the error reasons.
type Metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	orders   *prometheus.CounterVec
}

// NewMetrics registers the API metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stockguard_rpc_requests_total", Help: "RPCs handled, by service, method, protocol and code.",
		}, []string{"service", "method", "protocol", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "stockguard_rpc_duration_seconds", Help: "RPC latency, by service, method and protocol. Exemplars carry trace ids when tracing is on.",
			Buckets: prometheus.ExponentialBucketsRange(0.0005, 10, 16),
		}, []string{"service", "method", "protocol"}),
		orders: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stockguard_order_outcomes_total", Help: "PlaceOrder outcomes: result placed, replayed or rejected, with the rejection reason.",
		}, []string{"result", "reason"}),
	}
	reg.MustRegister(m.requests, m.duration, m.orders)
	return m
}

func (m *Metrics) orderOutcome(result, reason string) {
	if m != nil {
		m.orders.WithLabelValues(result, reason).Inc()
	}
}

// Protocols as labelled in metrics and logs.
const (
	protoGRPC    = "grpc"
	protoGRPCWeb = "grpc_web"
	protoConnect = "connect"
	protoREST    = "rest"
)

// accessRecord is what one request's access-log line says; the HTTP
// middleware creates it, the interceptor fills in the RPC's part.
type accessRecord struct {
	mu        sync.Mutex
	protocol  string
	procedure string
	code      string
	subject   string
	traceID   string
	spanID    string
}

type recordKey struct{}

func recordFrom(ctx context.Context) *accessRecord {
	r, _ := ctx.Value(recordKey{}).(*accessRecord)
	return r
}

func classify(r *http.Request) string {
	if !strings.HasPrefix(r.URL.Path, "/stockguard.v1.") && !strings.HasPrefix(r.URL.Path, "/grpc.") {
		return protoREST
	}
	ct := r.Header.Get("Content-Type")
	switch {
	case strings.HasPrefix(ct, "application/grpc-web"):
		return protoGRPCWeb
	case strings.HasPrefix(ct, "application/grpc"):
		return protoGRPC
	}
	return protoConnect
}

// countingWriter counts response bytes and keeps the writer's optional
// abilities reachable through Unwrap (http.ResponseController) and Flush.
type countingWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *countingWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *countingWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

func (w *countingWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *countingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

type countingBody struct {
	io.ReadCloser
	bytes int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.bytes += int64(n)
	return n, err
}

// AccessLog writes one structured line per request: time, protocol,
// procedure, code, duration, bytes in and out, peer, the caller's subject,
// and the trace and span ids. Tokens and bodies are never logged.
func AccessLog(log *zap.Logger, next http.Handler) http.Handler {
	log = log.Named("access")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		began := time.Now()
		rec := &accessRecord{protocol: classify(r)}
		cw := &countingWriter{ResponseWriter: w}
		body := &countingBody{ReadCloser: r.Body}
		r.Body = body
		next.ServeHTTP(cw, r.WithContext(context.WithValue(r.Context(), recordKey{}, rec)))
		rec.mu.Lock()
		defer rec.mu.Unlock()
		procedure := rec.procedure
		if procedure == "" {
			procedure = r.Method + " " + r.URL.Path
		}
		code := rec.code
		if code == "" {
			code = fmt.Sprint(cw.status)
		}
		log.Info("request",
			zap.String("protocol", rec.protocol),
			zap.String("procedure", procedure),
			zap.String("code", code),
			zap.Int("http_status", cw.status),
			zap.Duration("duration", time.Since(began)),
			zap.Int64("bytes_in", body.bytes),
			zap.Int64("bytes_out", cw.bytes),
			zap.String("peer", r.RemoteAddr),
			zap.String("sub", rec.subject),
			zap.String("trace_id", rec.traceID),
			zap.String("span_id", rec.spanID),
		)
	})
}

// observeInterceptor records RED metrics and fills the access record. It
// runs inside the tracing interceptor, so the span is in the context.
type observeInterceptor struct{ metrics *Metrics }

func splitProcedure(p string) (service, method string) {
	p = strings.TrimPrefix(p, "/")
	service, method, _ = strings.Cut(p, "/")
	return service, method
}

func (o observeInterceptor) observe(ctx context.Context, procedure string, began time.Time, err error) {
	code := "ok"
	if err != nil {
		code = connect.CodeOf(err).String()
	}
	protocol := protoConnect
	rec := recordFrom(ctx)
	sc := trace.SpanContextFromContext(ctx)
	if rec != nil {
		rec.mu.Lock()
		protocol = rec.protocol
		rec.procedure, rec.code = procedure, code
		if sc.IsValid() {
			rec.traceID, rec.spanID = sc.TraceID().String(), sc.SpanID().String()
		}
		rec.mu.Unlock()
	}
	if o.metrics == nil {
		return
	}
	service, method := splitProcedure(procedure)
	o.metrics.requests.WithLabelValues(service, method, protocol, code).Inc()
	h := o.metrics.duration.WithLabelValues(service, method, protocol)
	secs := time.Since(began).Seconds()
	if eo, ok := h.(prometheus.ExemplarObserver); ok && sc.IsSampled() {
		eo.ObserveWithExemplar(secs, prometheus.Labels{"trace_id": sc.TraceID().String()})
	} else {
		h.Observe(secs)
	}
}

func (o observeInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		began := time.Now()
		res, err := next(ctx, req)
		o.observe(ctx, req.Spec().Procedure, began, err)
		return res, err
	}
}

func (o observeInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (o observeInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		began := time.Now()
		err := next(ctx, conn)
		o.observe(ctx, conn.Spec().Procedure, began, err)
		return err
	}
}

// recoverPanic answers a panicking handler with internal and an error id,
// and logs the panic with its stack under the same id.
func recoverPanic(log *zap.Logger) func(context.Context, connect.Spec, http.Header, any) error {
	return func(ctx context.Context, spec connect.Spec, _ http.Header, p any) error {
		id := newErrorID()
		sc := trace.SpanContextFromContext(ctx)
		log.Error("panic in handler", zap.String("error_id", id), zap.String("procedure", spec.Procedure),
			zap.Any("panic", p), zap.ByteString("stack", debug.Stack()), zap.String("trace_id", sc.TraceID().String()))
		return withInfo(connect.CodeInternal, "internal error; quote error id "+id+" when reporting it", ReasonInternal,
			map[string]string{"error_id": id})
	}
}

// reasonOf is the ErrorInfo reason of err, if it has one.
func reasonOf(err error) string {
	var ce *connect.Error
	if !errors.As(err, &ce) {
		return ""
	}
	for _, d := range ce.Details() {
		if v, derr := d.Value(); derr == nil {
			if info, ok := v.(*errdetails.ErrorInfo); ok {
				return info.GetReason()
			}
		}
	}
	return ""
}
