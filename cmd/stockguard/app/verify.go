package app

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"go.uber.org/fx"
	"go.uber.org/zap"

	"github.com/stockguard/stockguard/modules/inventory"
	"github.com/stockguard/stockguard/platform/config"
)

// Verify audits every item in cfg's database, writes the report to out,
// and says whether nothing was wrong. It is `stockguard verify`.
func Verify(ctx context.Context, cfg config.Config, log *zap.Logger, out io.Writer) (bool, error) {
	if cfg.DatabaseURL == "" {
		return false, errors.New("DATABASE_URL is not set; verify checks a PostgreSQL database (the in-memory store lives inside the server)")
	}
	var auditor inventory.Auditor
	fxApp := fx.New(fx.NopLogger, fx.Supply(log),
		fx.Provide(
			func() prometheus.Registerer { return prometheus.NewRegistry() },
			func() trace.TracerProvider { return noop.NewTracerProvider() },
		),
		Storage(cfg, zap.NewNop()), fx.Populate(&auditor))
	if err := fxApp.Err(); err != nil {
		return false, err
	}
	if err := fxApp.Start(ctx); err != nil {
		return false, err
	}
	defer fxApp.Stop(context.WithoutCancel(ctx)) //nolint:errcheck // the audit result is what matters
	report, err := auditor.Audit(ctx)
	if err != nil {
		return false, err
	}
	return PrintReport(out, report), nil
}

// PrintReport writes the audit report and says whether it found nothing wrong.
func PrintReport(out io.Writer, r inventory.AuditReport) bool {
	for _, d := range r.Discrepancies {
		fmt.Fprintln(out, "MISMATCH", d.String())
	}
	if r.OK() {
		fmt.Fprintf(out, "OK: %d items checked; every item conserves stock and matches its ledger\n", r.ItemsChecked)
		return true
	}
	fmt.Fprintf(out, "FAILED: %d problems in %d items checked\n", len(r.Discrepancies), r.ItemsChecked)
	return false
}
