// Package broadcast fans committed stock changes out to watchers: WebSocket
// clients and WatchStock streams. The Hub is sharded by item, never blocks a
// publisher on a subscriber, conflates per subscriber and item (a slow
// watcher gets the newest level, never a queue of stale ones), sends a
// snapshot on subscribe, and encodes each update once per wire format.
//
// It declares the ports it consumes (Levels) and must not import transports,
// other modules' adapters, or any adapter at all.
package broadcast
