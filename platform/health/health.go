// Package health serves liveness (/healthz) and readiness (/readyz) on the
// admin server. Readiness runs every Check in the "readiness" value group.
//
// It imports nothing from modules or transports.
package health

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"time"

	"go.uber.org/fx"

	"github.com/stockguard/stockguard/platform/httpserver"
)

// Check is one dependency readiness waits for.
type Check struct {
	Name string
	Fn   func(ctx context.Context) error
}

// AsCheck annotates a constructor of Check for the readiness group.
func AsCheck(f any) any {
	return fx.Annotate(f, fx.ResultTags(`group:"readiness"`))
}

// Checker runs every readiness check.
type Checker struct {
	checks  []Check
	timeout time.Duration
}

type checkerParams struct {
	fx.In
	Checks []Check `group:"readiness"`
}

// NewChecker returns a Checker running checks, each bounded by 2 s.
func NewChecker(checks []Check) *Checker {
	return &Checker{checks: checks, timeout: 2 * time.Second}
}

// Result is the outcome of every check: the error text per failing check.
type Result map[string]string

// Run runs every check concurrently and returns the failures.
func (c *Checker) Run(ctx context.Context) Result {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var mu sync.Mutex
	var wg sync.WaitGroup
	out := Result{}
	for _, ch := range c.checks {
		wg.Go(func() {
			if err := ch.Fn(ctx); err != nil {
				mu.Lock()
				out[ch.Name] = err.Error()
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return out
}

// ReadyHandler answers 200 when every check passes and 503 with the
// failures otherwise.
func (c *Checker) ReadyHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		failed := c.Run(r.Context())
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		status := "ready"
		if len(failed) > 0 {
			status = "not ready"
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"status": status, "failed": failed})
	})
}

// Module provides the Checker and mounts /healthz and /readyz.
var Module = fx.Module("health",
	fx.Provide(func(p checkerParams) *Checker { return NewChecker(p.Checks) }),
	fx.Provide(
		httpserver.AsAdminRoute(func() httpserver.Route {
			return httpserver.Route{Pattern: "GET /healthz", Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "text/plain")
				_, _ = w.Write([]byte("ok\n"))
			})}
		}),
		httpserver.AsAdminRoute(func(c *Checker) httpserver.Route {
			return httpserver.Route{Pattern: "GET /readyz", Handler: c.ReadyHandler()}
		}),
	),
)
