package orders

import (
	"context"

	"go.uber.org/fx"
)

// provideService builds the Service, with a Coalescer when cfg enables one
// (MaxBatch > 0), stopped with the app.
func provideService(lc fx.Lifecycle, store Store, cfg CoalescerConfig) (*Service, *Coalescer) {
	s := NewService(store)
	if cfg.MaxBatch <= 0 {
		return s, nil
	}
	c := NewCoalescer(store, cfg)
	lc.Append(fx.StopHook(c.Stop))
	return s.WithCoalescer(c), c
}

// Module provides the order Service (and its Coalescer, nil when
// coalescing is off) and runs the hold Sweeper for the life of the app. An
// adapter module must provide the Store, and the app must supply a
// SweeperConfig and a CoalescerConfig.
var Module = fx.Module("orders",
	fx.Provide(provideService, NewSweeper),
	fx.Invoke(func(lc fx.Lifecycle, s *Sweeper) {
		lc.Append(fx.Hook{
			OnStart: func(context.Context) error { s.Start(); return nil },
			OnStop:  s.Stop,
		})
	}),
)
