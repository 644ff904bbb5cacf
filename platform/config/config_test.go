package config

import (
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestLoad_DefaultsAreValid(t *testing.T) {
	c, err := Load(nil, env(nil))
	if err != nil {
		t.Fatalf("Load() error = %v", err)
	}
	if c.HTTPAddr != ":8080" || c.AdminAddr != ":9090" || c.DatabaseURL != "" {
		t.Fatalf("defaults = %+v", c)
	}
}

func TestLoad_FlagOverridesEnvironment(t *testing.T) {
	c, err := Load([]string{"-http-addr", "127.0.0.1:7000"}, env(map[string]string{
		"STOCKGUARD_HTTP_ADDR": ":9999", "STOCKGUARD_DB_LOCK_TIMEOUT": "750ms",
	}))
	if err != nil {
		t.Fatalf("Load() error = %v", err)
	}
	if c.HTTPAddr != "127.0.0.1:7000" || c.LockTimeout != 750*time.Millisecond {
		t.Fatalf("got %+v", c)
	}
}

func TestLoad_ParsesOriginList(t *testing.T) {
	c, err := Load(nil, env(map[string]string{"STOCKGUARD_CORS_ORIGINS": "https://shop.example.com, http://localhost:5173"}))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.CORSOrigins) != 2 || c.CORSOrigins[1] != "http://localhost:5173" {
		t.Fatalf("origins = %q", c.CORSOrigins)
	}
}

func TestLoad_ErrorsNameTheSettingAndTheFix(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want []string
	}{
		{"bad database url", map[string]string{"DATABASE_URL": "postgres://a:b@host:notaport/db"}, []string{"DATABASE_URL", "expected postgres://"}},
		{"bad duration", map[string]string{"STOCKGUARD_DB_LOCK_TIMEOUT": "soon"}, []string{"STOCKGUARD_DB_LOCK_TIMEOUT", "expected e.g. 500ms"}},
		{"bad address", map[string]string{"STOCKGUARD_HTTP_ADDR": "8080"}, []string{"STOCKGUARD_HTTP_ADDR", "host:port"}},
		{"short secret", map[string]string{"STOCKGUARD_JWT_SECRET": "hunter2"}, []string{"STOCKGUARD_JWT_SECRET", "at least 32"}},
		{"bad log format", map[string]string{"STOCKGUARD_LOG_FORMAT": "xml"}, []string{"STOCKGUARD_LOG_FORMAT"}},
		{"pool out of range", map[string]string{"STOCKGUARD_DB_MAX_CONNS": "0"}, []string{"STOCKGUARD_DB_MAX_CONNS", "1 to 1000"}},
		{"wildcard origin", map[string]string{"STOCKGUARD_CORS_ORIGINS": "*"}, []string{"STOCKGUARD_CORS_ORIGINS", "no wildcard"}},
		{"origin with a path", map[string]string{"STOCKGUARD_CORS_ORIGINS": "https://a.example/shop"}, []string{"STOCKGUARD_CORS_ORIGINS"}},
		{"bad rate", map[string]string{"STOCKGUARD_RATE_LIMIT_RPS": "fast"}, []string{"STOCKGUARD_RATE_LIMIT_RPS"}},
		{"two problems at once", map[string]string{"STOCKGUARD_LOG_LEVEL": "loud", "STOCKGUARD_SWEEP_BATCH": "0"}, []string{"STOCKGUARD_LOG_LEVEL", "STOCKGUARD_SWEEP_BATCH"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(nil, env(tt.env))
			if err == nil {
				t.Fatal("Load() error = nil, want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}
