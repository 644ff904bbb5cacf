// Package metrics owns the Prometheus registry and serves it on the admin
// server's /metrics, with the Go runtime and process collectors.
//
// It imports nothing from modules or transports.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/fx"

	"github.com/stockguard/stockguard/platform/httpserver"
)

// NewRegistry returns a registry holding the Go and process collectors.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Module provides the registry (also as a prometheus.Registerer) and
// mounts /metrics on the admin server.
var Module = fx.Module("metrics",
	fx.Provide(
		NewRegistry,
		func(r *prometheus.Registry) prometheus.Registerer { return r },
		httpserver.AsAdminRoute(func(r *prometheus.Registry) httpserver.Route {
			return httpserver.Route{Pattern: "GET /metrics", Handler: promhttp.HandlerFor(r, promhttp.HandlerOpts{Registry: r})}
		}),
	),
)
