package orders

import (
	"context"

	"go.uber.org/fx"
)

// Module provides the order Service and runs the hold Sweeper for the life
// of the app. An adapter module must provide the Store, and the app must
// supply a SweeperConfig.
var Module = fx.Module("orders",
	fx.Provide(NewService, NewSweeper),
	fx.Invoke(func(lc fx.Lifecycle, s *Sweeper) {
		lc.Append(fx.Hook{
			OnStart: func(context.Context) error { s.Start(); return nil },
			OnStop:  s.Stop,
		})
	}),
)
