package inventory

import "go.uber.org/fx"

// Module provides the inventory Service. An adapter module must provide the
// Store (see inventory/postgres and inventory/memory).
var Module = fx.Module("inventory",
	fx.Provide(NewService),
)
