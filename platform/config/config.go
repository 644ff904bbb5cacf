// Package config loads stockguard's configuration once, from environment
// variables overridden by flags, into one struct, and validates it with
// errors a person can act on.
//
// It imports nothing from stockguard but platform/postgres (to check
// DATABASE_URL the way the pool will read it).
package config

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/stockguard/stockguard/platform/postgres"
)

// Config is every setting stockguard reads.
type Config struct {
	HTTPAddr  string // STOCKGUARD_HTTP_ADDR: API server (HTTP/1.1 and h2c)
	AdminAddr string // STOCKGUARD_ADMIN_ADDR: health, readiness and metrics

	DatabaseURL string // DATABASE_URL: empty selects the in-memory store
	DBMaxConns  int32  // STOCKGUARD_DB_MAX_CONNS

	LockTimeout      time.Duration // STOCKGUARD_DB_LOCK_TIMEOUT
	StatementTimeout time.Duration // STOCKGUARD_DB_STATEMENT_TIMEOUT
	TxMaxAttempts    int           // STOCKGUARD_DB_TX_ATTEMPTS

	SweepInterval  time.Duration // STOCKGUARD_SWEEP_INTERVAL
	SweepBatchSize int           // STOCKGUARD_SWEEP_BATCH

	JWTSecret string // STOCKGUARD_JWT_SECRET: empty generates one (dev mode)

	// CORSOrigins are the browser origins allowed to call the API and open
	// WebSockets (STOCKGUARD_CORS_ORIGINS, comma-separated). Empty: none.
	CORSOrigins []string

	RateLimitRPS   float64 // STOCKGUARD_RATE_LIMIT_RPS: sustained calls per second per caller; 0 disables
	RateLimitBurst int     // STOCKGUARD_RATE_LIMIT_BURST: calls a caller may make at once

	ReadHeaderTimeout time.Duration // STOCKGUARD_READ_HEADER_TIMEOUT: slow-header clients are cut off after this

	Coalesce         bool // STOCKGUARD_COALESCE: commit many purchases of one item in one transaction
	CoalesceMaxBatch int  // STOCKGUARD_COALESCE_MAX_BATCH: purchases per transaction, at most
	CoalesceQueue    int  // STOCKGUARD_COALESCE_QUEUE: purchases waiting per lane; more are shed
	CoalesceLanes    int  // STOCKGUARD_COALESCE_LANES: queues items are spread over, each with its own transactions

	AuditInterval  time.Duration // STOCKGUARD_AUDIT_INTERVAL: how often the server checks the stock invariant; 0 never
	MetricsItemCap int           // STOCKGUARD_METRICS_ITEM_CAP: items with per-item stock gauges

	WSMaxConnections int           // STOCKGUARD_WS_MAX_CONNECTIONS: open WebSocket connections at once
	WSWriteTimeout   time.Duration // STOCKGUARD_WS_WRITE_TIMEOUT: a client that takes longer to accept a frame is evicted

	LogFormat string // STOCKGUARD_LOG_FORMAT: json or console
	LogLevel  string // STOCKGUARD_LOG_LEVEL: debug, info, warn or error

	ShutdownTimeout time.Duration // STOCKGUARD_SHUTDOWN_TIMEOUT
}

// Defaults returns the configuration used when nothing is set.
func Defaults() Config {
	return Config{
		HTTPAddr:          ":8080",
		AdminAddr:         ":9090",
		DBMaxConns:        16,
		LockTimeout:       2 * time.Second,
		StatementTimeout:  5 * time.Second,
		TxMaxAttempts:     5,
		SweepInterval:     time.Second,
		SweepBatchSize:    500,
		RateLimitRPS:      50,
		RateLimitBurst:    100,
		ReadHeaderTimeout: 5 * time.Second,
		WSMaxConnections:  20_000,
		AuditInterval:     5 * time.Minute,
		Coalesce:          true,
		CoalesceMaxBatch:  4096,
		CoalesceQueue:     4096,
		CoalesceLanes:     1,
		MetricsItemCap:    100,
		WSWriteTimeout:    5 * time.Second,
		LogFormat:         "json",
		LogLevel:          "info",
		ShutdownTimeout:   15 * time.Second,
	}
}

// MinJWTSecretLen is the shortest HS256 secret accepted.
const MinJWTSecretLen = 32

// Load reads the environment through getenv, then flags from args, and
// validates the result. A flag wins over its environment variable.
func Load(args []string, getenv func(string) string) (Config, error) {
	c := Defaults()
	fs := flag.NewFlagSet("stockguard", flag.ContinueOnError)
	var errs []error
	str := func(p *string, name, env, usage string) {
		if v := getenv(env); v != "" {
			*p = v
		}
		fs.StringVar(p, name, *p, usage+" ("+env+")")
	}
	dur := func(p *time.Duration, name, env, usage string) {
		if v := getenv(env); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %q is not a duration; expected e.g. 500ms, 2s or 1m", env, v))
			} else {
				*p = d
			}
		}
		fs.DurationVar(p, name, *p, usage+" ("+env+")")
	}
	num := func(p *int, name, env, usage string) {
		if v := getenv(env); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %q is not a whole number", env, v))
			} else {
				*p = n
			}
		}
		fs.IntVar(p, name, *p, usage+" ("+env+")")
	}
	maxConns := int(c.DBMaxConns)
	origins := strings.Join(c.CORSOrigins, ",")
	str(&origins, "cors-origins", "STOCKGUARD_CORS_ORIGINS", "comma-separated browser origins allowed to call the API, e.g. https://shop.example.com")
	rps := strconv.FormatFloat(c.RateLimitRPS, 'f', -1, 64)
	str(&rps, "rate-limit-rps", "STOCKGUARD_RATE_LIMIT_RPS", "sustained calls per second per caller; 0 disables")
	num(&c.RateLimitBurst, "rate-limit-burst", "STOCKGUARD_RATE_LIMIT_BURST", "calls a caller may make at once")
	dur(&c.WSWriteTimeout, "ws-write-timeout", "STOCKGUARD_WS_WRITE_TIMEOUT", "evict a WebSocket client that takes longer than this to accept a frame")
	coalesce := strconv.FormatBool(c.Coalesce)
	str(&coalesce, "coalesce", "STOCKGUARD_COALESCE", "commit many purchases of one item in one transaction (true or false)")
	num(&c.CoalesceMaxBatch, "coalesce-max-batch", "STOCKGUARD_COALESCE_MAX_BATCH", "purchases per transaction, at most")
	num(&c.CoalesceQueue, "coalesce-queue", "STOCKGUARD_COALESCE_QUEUE", "purchases waiting per lane; more are refused at once")
	num(&c.CoalesceLanes, "coalesce-lanes", "STOCKGUARD_COALESCE_LANES", "queues purchases are spread over by item; each commits its own batches")
	dur(&c.AuditInterval, "audit-interval", "STOCKGUARD_AUDIT_INTERVAL", "how often to check the stock invariant (0: never)")
	num(&c.MetricsItemCap, "metrics-item-cap", "STOCKGUARD_METRICS_ITEM_CAP", "items with per-item stock gauges (watched items first)")
	num(&c.WSMaxConnections, "ws-max-connections", "STOCKGUARD_WS_MAX_CONNECTIONS", "open WebSocket connections at once")
	dur(&c.ReadHeaderTimeout, "read-header-timeout", "STOCKGUARD_READ_HEADER_TIMEOUT", "longest wait for request headers")
	str(&c.HTTPAddr, "http-addr", "STOCKGUARD_HTTP_ADDR", "API listen address")
	str(&c.AdminAddr, "admin-addr", "STOCKGUARD_ADMIN_ADDR", "admin listen address (health, metrics)")
	str(&c.DatabaseURL, "database-url", "DATABASE_URL", "PostgreSQL URL; empty for the in-memory store")
	num(&maxConns, "db-max-conns", "STOCKGUARD_DB_MAX_CONNS", "PostgreSQL pool size")
	dur(&c.LockTimeout, "db-lock-timeout", "STOCKGUARD_DB_LOCK_TIMEOUT", "longest wait for a row lock")
	dur(&c.StatementTimeout, "db-statement-timeout", "STOCKGUARD_DB_STATEMENT_TIMEOUT", "longest SQL statement")
	num(&c.TxMaxAttempts, "db-tx-attempts", "STOCKGUARD_DB_TX_ATTEMPTS", "tries of a transaction on serialization failure or deadlock")
	dur(&c.SweepInterval, "sweep-interval", "STOCKGUARD_SWEEP_INTERVAL", "how often expired holds are released")
	num(&c.SweepBatchSize, "sweep-batch", "STOCKGUARD_SWEEP_BATCH", "holds expired per sweeper transaction")
	str(&c.JWTSecret, "jwt-secret", "STOCKGUARD_JWT_SECRET", "HS256 secret for bearer tokens; empty generates one (dev mode)")
	str(&c.LogFormat, "log-format", "STOCKGUARD_LOG_FORMAT", "json or console")
	str(&c.LogLevel, "log-level", "STOCKGUARD_LOG_LEVEL", "debug, info, warn or error")
	dur(&c.ShutdownTimeout, "shutdown-timeout", "STOCKGUARD_SHUTDOWN_TIMEOUT", "grace period for in-flight requests on stop")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		errs = append(errs, fmt.Errorf("unexpected arguments %q", fs.Args()))
	}
	c.DBMaxConns = int32(min(maxConns, 1<<20))
	c.CORSOrigins = nil
	for _, o := range strings.Split(origins, ",") {
		if o = strings.TrimSpace(o); o != "" {
			c.CORSOrigins = append(c.CORSOrigins, o)
		}
	}
	if b, err := strconv.ParseBool(strings.TrimSpace(coalesce)); err != nil {
		errs = append(errs, fmt.Errorf("STOCKGUARD_COALESCE: %q is not true or false", coalesce))
	} else {
		c.Coalesce = b
	}
	if v, err := strconv.ParseFloat(strings.TrimSpace(rps), 64); err != nil {
		errs = append(errs, fmt.Errorf("STOCKGUARD_RATE_LIMIT_RPS: %q is not a number", rps))
	} else {
		c.RateLimitRPS = v
	}
	if maxConns < 1 || maxConns > 1000 {
		errs = append(errs, fmt.Errorf("STOCKGUARD_DB_MAX_CONNS: %d is out of range; expected 1 to 1000", maxConns))
	}
	if err := errors.Join(append(errs, c.Validate())...); err != nil {
		return c, err
	}
	return c, nil
}

// Validate reports every invalid setting at once.
func (c Config) Validate() error {
	var errs []error
	for _, a := range []struct{ env, v string }{{"STOCKGUARD_HTTP_ADDR", c.HTTPAddr}, {"STOCKGUARD_ADMIN_ADDR", c.AdminAddr}} {
		if _, port, err := net.SplitHostPort(a.v); err != nil || port == "" {
			errs = append(errs, fmt.Errorf("%s: %q is not host:port; expected e.g. :8080 or 127.0.0.1:8080", a.env, a.v))
		}
	}
	if c.DatabaseURL != "" {
		if _, err := postgres.ParseURL(c.DatabaseURL); err != nil {
			errs = append(errs, fmt.Errorf("DATABASE_URL: %w", err))
		}
	}
	positive := []struct {
		env string
		d   time.Duration
	}{
		{"STOCKGUARD_DB_LOCK_TIMEOUT", c.LockTimeout},
		{"STOCKGUARD_DB_STATEMENT_TIMEOUT", c.StatementTimeout},
		{"STOCKGUARD_SWEEP_INTERVAL", c.SweepInterval},
		{"STOCKGUARD_SHUTDOWN_TIMEOUT", c.ShutdownTimeout},
		{"STOCKGUARD_WS_WRITE_TIMEOUT", c.WSWriteTimeout},
	}
	for _, p := range positive {
		if p.d <= 0 {
			errs = append(errs, fmt.Errorf("%s: must be greater than zero, got %s", p.env, p.d))
		}
	}
	if c.TxMaxAttempts < 1 || c.TxMaxAttempts > 20 {
		errs = append(errs, fmt.Errorf("STOCKGUARD_DB_TX_ATTEMPTS: %d is out of range; expected 1 to 20", c.TxMaxAttempts))
	}
	if c.SweepBatchSize < 1 || c.SweepBatchSize > 10000 {
		errs = append(errs, fmt.Errorf("STOCKGUARD_SWEEP_BATCH: %d is out of range; expected 1 to 10000", c.SweepBatchSize))
	}
	for _, o := range c.CORSOrigins {
		u, err := url.Parse(o)
		if o == "*" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
			errs = append(errs, fmt.Errorf("STOCKGUARD_CORS_ORIGINS: %q is not an origin; list each one as scheme://host[:port], e.g. https://shop.example.com (no wildcard)", o))
		}
	}
	if c.RateLimitRPS < 0 || c.RateLimitRPS > 1e6 {
		errs = append(errs, fmt.Errorf("STOCKGUARD_RATE_LIMIT_RPS: %v is out of range; expected 0 (off) to 1000000", c.RateLimitRPS))
	}
	if c.RateLimitRPS > 0 && (c.RateLimitBurst < 1 || c.RateLimitBurst > 1e6) {
		errs = append(errs, fmt.Errorf("STOCKGUARD_RATE_LIMIT_BURST: %d is out of range; expected 1 to 1000000", c.RateLimitBurst))
	}
	if c.CoalesceMaxBatch < 1 || c.CoalesceMaxBatch > 10_000 {
		errs = append(errs, fmt.Errorf("STOCKGUARD_COALESCE_MAX_BATCH: %d is out of range; expected 1 to 10000", c.CoalesceMaxBatch))
	}
	if c.CoalesceLanes < 1 || c.CoalesceLanes > 1024 {
		errs = append(errs, fmt.Errorf("STOCKGUARD_COALESCE_LANES: %d is out of range; expected 1 to 1024", c.CoalesceLanes))
	}
	if c.CoalesceQueue < 1 || c.CoalesceQueue > 1_000_000 {
		errs = append(errs, fmt.Errorf("STOCKGUARD_COALESCE_QUEUE: %d is out of range; expected 1 to 1000000", c.CoalesceQueue))
	}
	if c.AuditInterval < 0 {
		errs = append(errs, fmt.Errorf("STOCKGUARD_AUDIT_INTERVAL: must be 0 (never) or positive, got %s", c.AuditInterval))
	}
	if c.MetricsItemCap < 0 || c.MetricsItemCap > 10_000 {
		errs = append(errs, fmt.Errorf("STOCKGUARD_METRICS_ITEM_CAP: %d is out of range; expected 0 to 10000", c.MetricsItemCap))
	}
	if c.WSMaxConnections < 1 || c.WSMaxConnections > 1_000_000 {
		errs = append(errs, fmt.Errorf("STOCKGUARD_WS_MAX_CONNECTIONS: %d is out of range; expected 1 to 1000000", c.WSMaxConnections))
	}
	if c.ReadHeaderTimeout <= 0 {
		errs = append(errs, fmt.Errorf("STOCKGUARD_READ_HEADER_TIMEOUT: must be greater than zero, got %s", c.ReadHeaderTimeout))
	}
	if c.JWTSecret != "" && len(c.JWTSecret) < MinJWTSecretLen {
		errs = append(errs, fmt.Errorf("STOCKGUARD_JWT_SECRET: too short (%d bytes); use at least %d random bytes, e.g. from `openssl rand -hex 32`", len(c.JWTSecret), MinJWTSecretLen))
	}
	switch strings.ToLower(c.LogFormat) {
	case "json", "console":
	default:
		errs = append(errs, fmt.Errorf("STOCKGUARD_LOG_FORMAT: %q is not json or console", c.LogFormat))
	}
	switch strings.ToLower(c.LogLevel) {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("STOCKGUARD_LOG_LEVEL: %q is not debug, info, warn or error", c.LogLevel))
	}
	return errors.Join(errs...)
}
