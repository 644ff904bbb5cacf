package orders

import (
	"testing"

	"go.uber.org/goleak"
	"go.uber.org/zap"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func zapNop() *zap.Logger { return zap.NewNop() }
