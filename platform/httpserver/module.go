package httpserver

import (
	"time"

	"go.uber.org/fx"
	"go.uber.org/zap"
)

// Config is where the two servers listen and how long they wait for
// request headers.
type Config struct {
	API               string
	Admin             string
	ReadHeaderTimeout time.Duration // zero means ReadHeaderTimeout
}

// API is the public API server.
type API struct{ *Server }

// Admin is the operations server: health, readiness, metrics.
type Admin struct{ *Server }

type apiParams struct {
	fx.In
	Config Config
	Log    *zap.Logger
	Routes []Route `group:"api_routes"`
	LC     fx.Lifecycle
}

type adminParams struct {
	fx.In
	Config Config
	Log    *zap.Logger
	Routes []Route `group:"admin_routes"`
	LC     fx.Lifecycle
}

func newAPI(p apiParams) (*API, error) {
	mux, err := Mux(p.Routes)
	if err != nil {
		return nil, err
	}
	s := &API{New("api", p.Config.API, mux, p.Log, p.Config.ReadHeaderTimeout)}
	p.LC.Append(fx.StartStopHook(s.Start, s.Stop))
	return s, nil
}

func newAdmin(p adminParams) (*Admin, error) {
	mux, err := Mux(p.Routes)
	if err != nil {
		return nil, err
	}
	s := &Admin{New("admin", p.Config.Admin, mux, p.Log, p.Config.ReadHeaderTimeout)}
	p.LC.Append(fx.StartStopHook(s.Start, s.Stop))
	return s, nil
}

// Module provides and runs the API and admin servers. It needs a Config and a
// logger; routes arrive through the api_routes and admin_routes groups.
var Module = fx.Module("httpserver",
	fx.Provide(newAPI, newAdmin),
	// Servers must start even when nothing else asks for them.
	fx.Invoke(func(*API, *Admin) {}),
)
