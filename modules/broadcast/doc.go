// Package broadcast will fan committed stock changes out to watchers
// (WebSocket clients and WatchStock streams). It is not built yet: until it
// is, StockService.WatchStock answers unimplemented and clients read stock
// with GetItem.
//
// It must not import transports or any adapter.
package broadcast
