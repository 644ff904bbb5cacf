package integration

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/stockguard/stockguard/tests/integration/pgtest"
)

// pg is the PostgreSQL server every test in this binary shares.
var pg *pgtest.Server

func TestMain(m *testing.M) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	var err error
	pg, err = pgtest.Start(ctx)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration tests need PostgreSQL:", err)
		os.Exit(1)
	}
	code := m.Run()
	pg.Close()
	os.Exit(code)
}
