package httpserver

import (
	"go.uber.org/fx"
	"go.uber.org/zap"
)

// Addrs are the listen addresses of the two servers.
type Addrs struct {
	API   string
	Admin string
}

// API is the public API server.
type API struct{ *Server }

// Admin is the operations server: health, readiness, metrics.
type Admin struct{ *Server }

type apiParams struct {
	fx.In
	Addrs  Addrs
	Log    *zap.Logger
	Routes []Route `group:"api_routes"`
	LC     fx.Lifecycle
}

type adminParams struct {
	fx.In
	Addrs  Addrs
	Log    *zap.Logger
	Routes []Route `group:"admin_routes"`
	LC     fx.Lifecycle
}

func newAPI(p apiParams) (*API, error) {
	mux, err := Mux(p.Routes)
	if err != nil {
		return nil, err
	}
	s := &API{New("api", p.Addrs.API, mux, p.Log)}
	p.LC.Append(fx.StartStopHook(s.Start, s.Stop))
	return s, nil
}

func newAdmin(p adminParams) (*Admin, error) {
	mux, err := Mux(p.Routes)
	if err != nil {
		return nil, err
	}
	s := &Admin{New("admin", p.Addrs.Admin, mux, p.Log)}
	p.LC.Append(fx.StartStopHook(s.Start, s.Stop))
	return s, nil
}

// Module provides and runs the API and admin servers. It needs Addrs and a
// logger; routes arrive through the api_routes and admin_routes groups.
var Module = fx.Module("httpserver",
	fx.Provide(newAPI, newAdmin),
	// Servers must start even when nothing else asks for them.
	fx.Invoke(func(*API, *Admin) {}),
)
