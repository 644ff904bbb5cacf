package integration

import (
	"context"
	"testing"
	"time"

	invpg "github.com/stockguard/stockguard/modules/inventory/postgres"
	"github.com/stockguard/stockguard/modules/orders/orderstest"
	ordpg "github.com/stockguard/stockguard/modules/orders/postgres"
	"github.com/stockguard/stockguard/platform/postgres"
)

// newRunner opens a pool on a fresh migrated database.
func newRunner(t *testing.T, cfg postgres.TxConfig) *postgres.Runner {
	t.Helper()
	pool, err := postgres.Open(context.Background(), postgres.PoolConfig{URL: pg.NewMigratedDatabase(t), MaxConns: 32})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return postgres.NewRunner(pool, cfg)
}

var defaultTx = postgres.TxConfig{LockTimeout: 5 * time.Second, StatementTimeout: 10 * time.Second, MaxAttempts: 5}

// The contract suite, against PostgreSQL.
func TestContract_Postgres(t *testing.T) {
	orderstest.Run(t, func(t *testing.T) orderstest.Stores {
		db := newRunner(t, defaultTx)
		items := invpg.NewItemStore(db)
		return orderstest.Stores{Items: items, Orders: ordpg.NewOrderStore(db), Auditor: items}
	})
}
