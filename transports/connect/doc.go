// Package connect serves the stockguard.v1 services over gRPC, gRPC-Web,
// Connect and REST (through vanguard) from one set of Connect handlers. It
// authenticates callers, enforces the role each procedure needs, converts
// between API messages and domain types, and is the only place where
// domain errors become API codes.
//
// It depends on modules; no module depends on it.
package connect
