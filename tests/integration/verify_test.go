package integration

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/stockguard/stockguard/cmd/stockguard/app"
)

// assertVerified runs `stockguard verify` against the server's database.
func assertVerified(t *testing.T, srv *testServer) {
	t.Helper()
	var out bytes.Buffer
	ok, err := app.Verify(context.Background(), srv.cfg, zap.NewNop(), &out)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if !ok || !strings.HasPrefix(out.String(), "OK:") {
		t.Fatalf("verify failed:\n%s", out.String())
	}
}
