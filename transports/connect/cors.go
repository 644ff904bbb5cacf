package connect

import (
	"net/http"

	connectcors "connectrpc.com/cors"
	"github.com/rs/cors"
)

// CORS allows browsers on origins to call every protocol: exactly the
// Connect and gRPC-Web request headers (plus Authorization and
// Idempotency-Key) are allowed, and their response headers exposed. No
// credentials (cookies) are allowed: callers authenticate with bearer
// tokens. With no origins the handler is returned as it is, with no CORS
// headers at all, so browsers refuse cross-origin calls.
func CORS(origins []string) func(http.Handler) http.Handler {
	if len(origins) == 0 {
		return func(h http.Handler) http.Handler { return h }
	}
	return cors.New(cors.Options{
		AllowedOrigins: origins,
		AllowedMethods: connectcors.AllowedMethods(),
		AllowedHeaders: append(connectcors.AllowedHeaders(), "Authorization", IdempotencyKeyHeader),
		ExposedHeaders: append(connectcors.ExposedHeaders(), "Retry-After"),
		MaxAge:         7200,
	}).Handler
}
