package benchmarks

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/stockguard/stockguard/modules/inventory"
	invpg "github.com/stockguard/stockguard/modules/inventory/postgres"
	"github.com/stockguard/stockguard/modules/orders"
	ordpg "github.com/stockguard/stockguard/modules/orders/postgres"
	pg "github.com/stockguard/stockguard/platform/postgres"
)

// BenchmarkPlaceBatchPostgres is the database side of a coalesced batch
// alone: PlaceBatch of 256 single-item purchases, all of one item or each
// of a different one of 10,000, with no HTTP and no load generator on the
// machine. It reports ns/purchase, so the two shapes compare directly (the
// spread shape is what target 3 of the load test pays more for). It needs
// an empty database it may migrate and fill:
//
//	STOCKGUARD_BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench?sslmode=disable \
//	    go test ./benchmarks -run '^$' -bench PlaceBatchPostgres -count 6
func BenchmarkPlaceBatchPostgres(b *testing.B) {
	url := os.Getenv("STOCKGUARD_BENCH_DATABASE_URL")
	if url == "" {
		b.Skip("STOCKGUARD_BENCH_DATABASE_URL is not set")
	}
	ctx := context.Background()
	pool, err := pg.Open(ctx, pg.PoolConfig{URL: url, MaxConns: 4})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(pool.Close)
	if _, err := pg.Migrate(ctx, pool); err != nil {
		b.Fatal(err)
	}
	db := pg.NewRunner(pool, pg.TxConfig{LockTimeout: 2 * time.Second, StatementTimeout: 10 * time.Second, MaxAttempts: 3})
	inv := inventory.NewService(invpg.NewItemStore(db))
	store := ordpg.NewOrderStore(db)

	const batchSize, spread = 256, 10_000
	items := make([]string, spread)
	for i := range items {
		it, err := inv.CreateItem(ctx, inventory.NewItem{SKU: fmt.Sprintf("BENCH-%s-%d", uuid.NewString()[:8], i), Name: "bench", InitialStock: inventory.MaxStock})
		if err != nil {
			b.Fatal(err)
		}
		items[i] = it.ID
	}
	if _, err := pool.Exec(ctx, "ANALYZE"); err != nil {
		b.Fatal(err)
	}

	for _, shape := range []struct {
		name  string
		items []string
	}{{"hot", items[:1]}, {"spread", items}} {
		b.Run(shape.name, func(b *testing.B) {
			next := 0
			batch := make([]orders.Order, batchSize)
			for b.Loop() {
				now := time.Now()
				for i := range batch {
					batch[i] = orders.Order{
						ID: uuid.Must(uuid.NewV7()).String(), CustomerID: fmt.Sprint("bench-", next%10_000), Status: orders.StatusConfirmed,
						RequestHash: "h", CreateTime: now, UpdateTime: now,
						Lines: []orders.Line{{ItemID: shape.items[next%len(shape.items)], Quantity: 1}},
					}
					next++
				}
				results, err := store.PlaceBatch(ctx, batch, nil)
				if err != nil {
					b.Fatal(err)
				}
				for _, r := range results {
					if r.Err != nil {
						b.Fatal(r.Err)
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batchSize), "ns/purchase")
		})
	}
}
