// Package integration tests stockguard as it ships: the real fx app on
// random loopback ports, called over real sockets by gRPC, gRPC-Web,
// Connect and REST clients, against a real PostgreSQL (see pgtest) and the
// in-memory store.
package integration
