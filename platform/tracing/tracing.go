// Package tracing sets up OpenTelemetry from the standard OTEL_* environment
// variables only. With none of them set, tracing is off: spans are not
// recorded and nothing is exported. W3C trace-context (and baggage) is
// always propagated, so a caller's trace continues through us either way.
//
// It imports nothing from modules or transports.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"go.uber.org/fx"
	"go.uber.org/zap"
)

// Enabled reports whether getenv configures an exporter: an OTLP endpoint,
// or OTEL_TRACES_EXPORTER other than "none".
func Enabled(getenv func(string) string) bool {
	if e := getenv("OTEL_TRACES_EXPORTER"); e != "" {
		return e != "none"
	}
	return getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

// Propagator is W3C trace-context plus baggage.
func Propagator() propagation.TextMapPropagator {
	return propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
}

// New returns the tracer provider for getenv and its shutdown function.
// Exporter, endpoint, headers, protocol (OTEL_EXPORTER_OTLP_PROTOCOL:
// http/protobuf, the default, or grpc), sampler (OTEL_TRACES_SAMPLER) and
// resource (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES) all come from the
// environment, read by the OpenTelemetry SDK itself.
func New(ctx context.Context, getenv func(string) string) (trace.TracerProvider, func(context.Context) error, error) {
	if !Enabled(getenv) {
		return noop.NewTracerProvider(), func(context.Context) error { return nil }, nil
	}
	if e := getenv("OTEL_TRACES_EXPORTER"); e != "" && e != "otlp" {
		return nil, nil, fmt.Errorf("OTEL_TRACES_EXPORTER: %q is not supported; use otlp or none", e)
	}
	proto := getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
	if proto == "" {
		proto = getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	var exp sdktrace.SpanExporter
	var err error
	switch strings.ToLower(proto) {
	case "", "http/protobuf":
		exp, err = otlptracehttp.New(ctx)
	case "grpc":
		exp, err = otlptracegrpc.New(ctx)
	default:
		return nil, nil, fmt.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL: %q is not supported; use http/protobuf or grpc", proto)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("otlp exporter: %w", err)
	}
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(semconv.ServiceName("stockguard")))
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		return nil, nil, err
	}
	if svc := getenv("OTEL_SERVICE_NAME"); svc != "" {
		res, _ = resource.Merge(res, resource.NewSchemaless(semconv.ServiceName(svc)))
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	return tp, tp.Shutdown, nil
}

// Module provides the global tracer provider and propagator, flushing
// spans on stop. Tests replace it with one that records to memory.
var Module = fx.Module("tracing",
	fx.Provide(func(lc fx.Lifecycle, log *zap.Logger) (trace.TracerProvider, error) {
		tp, shutdown, err := New(context.Background(), lookupEnv)
		if err != nil {
			return nil, err
		}
		otel.SetTracerProvider(tp)
		otel.SetTextMapPropagator(Propagator())
		if _, on := tp.(*sdktrace.TracerProvider); on {
			log.Info("tracing on: exporting spans over OTLP")
		}
		lc.Append(fx.StopHook(shutdown))
		return tp, nil
	}),
)
