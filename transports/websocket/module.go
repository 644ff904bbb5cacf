package websocket

import (
	"net/http"

	"go.uber.org/fx"
	"go.uber.org/zap"

	"github.com/stockguard/stockguard/modules/broadcast"
	"github.com/stockguard/stockguard/platform/config"
	"github.com/stockguard/stockguard/platform/httpserver"
)

type params struct {
	fx.In
	Hub    *broadcast.Hub
	Config config.Config
	Log    *zap.Logger
	LC     fx.Lifecycle
}

func newServer(p params) *Server {
	cfg := DefaultConfig()
	cfg.Origins = p.Config.CORSOrigins
	if p.Config.WSWriteTimeout > 0 {
		cfg.WriteTimeout = p.Config.WSWriteTimeout
	}
	if p.Config.WSMaxConnections > 0 {
		cfg.MaxConnections = p.Config.WSMaxConnections
	}
	s := NewServer(p.Hub, cfg, p.Log)
	// Hijacked connections are not closed by http.Server.Shutdown; say
	// goodbye to them ourselves before the API server stops.
	p.LC.Append(fx.StartStopHook(s.Start, s.Shutdown))
	return s
}

// Module serves GET /v1/ws on the API server.
var Module = fx.Module("transport.websocket",
	fx.Provide(newServer),
	fx.Provide(httpserver.AsAPIRoute(func(s *Server) httpserver.Route {
		return httpserver.Route{Pattern: "GET /v1/ws", Handler: http.Handler(s)}
	})),
)
