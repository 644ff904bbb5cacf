// Package postgres is the shared PostgreSQL plumbing: the pgx pool, the
// embedded forward-only migrations, and InTx, the transaction runner that
// sets lock and statement timeouts, retries serialization failures and
// deadlocks, and reports commits whose outcome is unknown.
//
// It must not import modules or transports. Adapters in modules/*/postgres
// use it.
package postgres
