package broadcast

import (
	"context"

	"go.uber.org/fx"
)

// LevelsFunc adapts a function to Levels.
type LevelsFunc func(ctx context.Context, ids []string) ([]Update, error)

// Levels implements Levels.
func (f LevelsFunc) Levels(ctx context.Context, ids []string) ([]Update, error) { return f(ctx, ids) }

// Module provides the Hub. The app must provide Levels and a feed that
// publishes committed changes (the in-memory store's hook, or the
// PostgreSQL LISTEN feed in broadcast/postgres).
var Module = fx.Module("broadcast", fx.Provide(NewHub))
