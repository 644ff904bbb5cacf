// Package httpserver runs stockguard's two HTTP servers under the fx
// lifecycle: the API server (HTTP/1.1 and h2c on one port) and the admin
// server (health, readiness, metrics). Handlers reach them through value
// groups of Route.
//
// It imports nothing from modules or transports.
package httpserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"go.uber.org/fx"
	"go.uber.org/zap"
)

// Route is one pattern on one server's mux.
type Route struct {
	Pattern string
	Handler http.Handler
}

// AsAPIRoute annotates a constructor of Route for the API server.
func AsAPIRoute(f any) any {
	return fx.Annotate(f, fx.ResultTags(`group:"api_routes"`))
}

// AsAdminRoute annotates a constructor of Route for the admin server.
func AsAdminRoute(f any) any {
	return fx.Annotate(f, fx.ResultTags(`group:"admin_routes"`))
}

// Limits and timeouts every server gets.
const (
	ReadHeaderTimeout = 5 * time.Second
	ReadTimeout       = 30 * time.Second
	// WriteTimeout bounds unary responses. Streaming handlers lift it per
	// request with http.ResponseController.
	WriteTimeout         = 30 * time.Second
	IdleTimeout          = 120 * time.Second
	MaxHeaderBytes       = 64 << 10
	MaxConcurrentStreams = 250
)

// Server is one listening HTTP server.
type Server struct {
	name string
	srv  *http.Server
	ln   net.Listener
	log  *zap.Logger
	done chan struct{}
}

// New returns a server for handler on addr, not yet listening. It serves
// HTTP/1.1 and HTTP/2 without TLS (h2c), as gRPC clients need. A zero
// readHeaderTimeout means ReadHeaderTimeout.
func New(name, addr string, handler http.Handler, log *zap.Logger, readHeaderTimeout time.Duration) *Server {
	if readHeaderTimeout <= 0 {
		readHeaderTimeout = ReadHeaderTimeout
	}
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	// net/http reports what went wrong with a connection (a handshake that
	// timed out, an accept error, a handler bug) through ErrorLog. These are
	// worth an operator's eye, so they are warnings. The level is valid, so
	// NewStdLogAt cannot fail.
	errorLog, _ := zap.NewStdLogAt(log.Named("net/http"), zap.WarnLevel)
	return &Server{
		name: name,
		log:  log.With(zap.String("server", name)),
		srv: &http.Server{
			Addr:              addr,
			Handler:           handler,
			Protocols:         protocols,
			HTTP2:             &http.HTTP2Config{MaxConcurrentStreams: MaxConcurrentStreams},
			ReadHeaderTimeout: readHeaderTimeout,
			ReadTimeout:       ReadTimeout,
			WriteTimeout:      WriteTimeout,
			IdleTimeout:       IdleTimeout,
			MaxHeaderBytes:    MaxHeaderBytes,
			ErrorLog:          errorLog,
		},
	}
}

// Start listens, so that a taken port fails the start, then serves in the
// background until Stop.
func (s *Server) Start(context.Context) error {
	ln, err := net.Listen("tcp", s.srv.Addr)
	if err != nil {
		return fmt.Errorf("%s server: listen on %s: %w", s.name, s.srv.Addr, err)
	}
	s.ln = ln
	s.done = make(chan struct{})
	s.log.Info("listening", zap.String("addr", ln.Addr().String()))
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("serve failed", zap.Error(err))
		}
	}()
	return nil
}

// Stop stops accepting, waits for in-flight requests until ctx ends, then
// closes what is left.
func (s *Server) Stop(ctx context.Context) error {
	if s.ln == nil {
		return nil
	}
	err := s.srv.Shutdown(ctx)
	if err != nil {
		_ = s.srv.Close()
	}
	<-s.done
	s.log.Info("stopped")
	return err
}

// Addr is the address the server listens on, once started.
func (s *Server) Addr() net.Addr {
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Mux builds a ServeMux from routes, refusing duplicate patterns.
func Mux(routes []Route) (*http.ServeMux, error) {
	mux := http.NewServeMux()
	seen := map[string]bool{}
	for _, r := range routes {
		if seen[r.Pattern] {
			return nil, fmt.Errorf("route %q registered twice", r.Pattern)
		}
		seen[r.Pattern] = true
		mux.Handle(r.Pattern, r.Handler)
	}
	return mux, nil
}
