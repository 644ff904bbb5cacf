// Package logging builds the zap logger: JSON by default, console for
// people, with a level that can be changed while running.
//
// It imports nothing from stockguard.
package logging

import (
	"fmt"
	"strings"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// New returns a logger writing to stderr in format ("json" or "console") at
// level, and the atomic level that controls it.
func New(format, level string) (*zap.Logger, zap.AtomicLevel, error) {
	lvl, err := zap.ParseAtomicLevel(strings.ToLower(level))
	if err != nil {
		return nil, lvl, fmt.Errorf("log level: %w", err)
	}
	cfg := zap.NewProductionConfig()
	cfg.Level = lvl
	cfg.Sampling = nil // never drop lines in an incident
	cfg.EncoderConfig.TimeKey = "time"
	cfg.EncoderConfig.EncodeTime = zapcore.RFC3339NanoTimeEncoder
	if strings.EqualFold(format, "console") {
		cfg.Encoding = "console"
		cfg.EncoderConfig.EncodeLevel = zapcore.CapitalColorLevelEncoder
	}
	log, err := cfg.Build()
	if err != nil {
		return nil, lvl, err
	}
	return log, lvl, nil
}
