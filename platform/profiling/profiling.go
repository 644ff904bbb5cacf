// Package profiling serves Go's pprof endpoints on the admin server, under
// /debug/pprof/, for CPU, heap and goroutine profiles of a live process.
// The admin port must not be exposed publicly.
//
// It imports nothing from modules or transports.
package profiling

import (
	"net/http"
	"net/http/pprof"

	"go.uber.org/fx"

	"github.com/stockguard/stockguard/platform/httpserver"
)

func route(pattern string, h http.HandlerFunc) any {
	return httpserver.AsAdminRoute(func() httpserver.Route { return httpserver.Route{Pattern: pattern, Handler: h} })
}

// Module mounts the pprof handlers on the admin server.
var Module = fx.Module("profiling",
	fx.Provide(
		route("GET /debug/pprof/", pprof.Index),
		route("GET /debug/pprof/cmdline", pprof.Cmdline),
		route("GET /debug/pprof/profile", pprof.Profile),
		route("GET /debug/pprof/symbol", pprof.Symbol),
		route("GET /debug/pprof/trace", pprof.Trace),
	),
)
