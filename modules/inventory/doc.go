// Package inventory is the item catalogue and its stock levels: the Item
// type, its errors, the Store port it consumes, and the Service that
// validates and runs inventory use cases.
//
// It must not import transports, other modules, or any adapter. Adapters
// (inventory/postgres, inventory/memory) import it, not the other way round.
package inventory
