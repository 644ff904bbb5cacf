// Package pgtest gives integration tests a real PostgreSQL: one server per
// test binary (a testcontainers container, or TEST_DATABASE_URL), and a
// fresh database per test cloned in milliseconds from a migrated template.
//
// Images:
//   - STOCKGUARD_TEST_POSTGRES_IMAGE picks the image (default postgres:16-alpine).
//   - Official postgres images are configured through their entrypoint's
//     environment variables.
//   - Images named stockguard/postgres (built by scripts/postgres-image.sh
//     from Debian packages, for machines without registry access) have no
//     entrypoint, so the container runs initdb and postgres itself.
//
// Every container carries the label stockguard.test=true, so a CI script
// can remove any that a crashed test binary left behind.
package pgtest

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/wait"

	"github.com/stockguard/stockguard/platform/postgres"
)

// DefaultImage is used when STOCKGUARD_TEST_POSTGRES_IMAGE is unset.
const DefaultImage = "postgres:16-alpine"

const templateDB = "stockguard_template"

// Server is one PostgreSQL server with a migrated template database.
type Server struct {
	admin     *url.URL // superuser URL of the maintenance database
	container testcontainers.Container
	counter   atomic.Int64
}

// Start starts (or connects to) the server and builds the template. Call
// Close when the tests are done, even when they failed.
func Start(ctx context.Context) (*Server, error) {
	s := &Server{}
	if raw := os.Getenv("TEST_DATABASE_URL"); raw != "" {
		u, err := url.Parse(raw)
		if err != nil {
			return nil, fmt.Errorf("TEST_DATABASE_URL: %w", err)
		}
		s.admin = u
	} else if err := s.startContainer(ctx); err != nil {
		return nil, err
	}
	if err := s.buildTemplate(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func (s *Server) startContainer(ctx context.Context) error {
	image := os.Getenv("STOCKGUARD_TEST_POSTGRES_IMAGE")
	if image == "" {
		image = DefaultImage
	}
	tuning := []string{"-c", "fsync=off", "-c", "full_page_writes=off", "-c", "max_connections=300"}
	opts := []testcontainers.ContainerCustomizer{
		testcontainers.WithExposedPorts("5432/tcp"),
		testcontainers.WithLabels(map[string]string{"stockguard.test": "true"}),
	}
	if strings.Contains(image, "stockguard/postgres") {
		script := "initdb -D /var/lib/postgresql/data -A trust -U postgres >/dev/null && " +
			"echo 'host all all 0.0.0.0/0 trust' >> /var/lib/postgresql/data/pg_hba.conf && " +
			"exec postgres -D /var/lib/postgresql/data -c listen_addresses=* -c unix_socket_directories=/tmp " +
			strings.Join(tuning, " ")
		opts = append(opts,
			testcontainers.WithCmd("sh", "-c", script),
			testcontainers.WithWaitStrategyAndDeadline(2*time.Minute,
				wait.ForLog("database system is ready to accept connections"),
				wait.ForListeningPort("5432/tcp")),
		)
	} else {
		opts = append(opts,
			testcontainers.WithEnv(map[string]string{"POSTGRES_PASSWORD": "postgres", "POSTGRES_HOST_AUTH_METHOD": "trust"}),
			testcontainers.WithCmd(append([]string{"postgres"}, tuning...)...),
			// The official entrypoint starts the server twice: once to
			// initialise, once for real.
			testcontainers.WithWaitStrategyAndDeadline(2*time.Minute,
				wait.ForLog("database system is ready to accept connections").WithOccurrence(2),
				wait.ForListeningPort("5432/tcp")),
		)
	}
	start := time.Now()
	c, err := testcontainers.Run(ctx, image, opts...)
	if err != nil {
		if c != nil {
			_ = c.Terminate(context.Background())
		}
		return fmt.Errorf("start postgres container from %s: %w (set STOCKGUARD_TEST_POSTGRES_IMAGE, or TEST_DATABASE_URL to use an existing server)", image, err)
	}
	s.container = c
	host, err := c.Host(ctx)
	if err != nil {
		return err
	}
	port, err := c.MappedPort(ctx, "5432/tcp")
	if err != nil {
		return err
	}
	s.admin = &url.URL{Scheme: "postgres", User: url.UserPassword("postgres", "postgres"),
		Host: fmt.Sprintf("%s:%s", host, port.Port()), Path: "/postgres", RawQuery: "sslmode=disable"}
	fmt.Fprintf(os.Stderr, "pgtest: started PostgreSQL container %.12s from %s at %s in %s\n",
		c.GetContainerID(), image, s.admin.Host, time.Since(start).Round(time.Millisecond))
	return nil
}

// URL returns the URL of database name on this server.
func (s *Server) URL(name string) string {
	u := *s.admin
	u.Path = "/" + name
	return u.String()
}

func (s *Server) exec(ctx context.Context, sql string) error {
	conn, err := pgx.Connect(ctx, s.admin.String())
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql)
	return err
}

func (s *Server) buildTemplate(ctx context.Context) error {
	_ = s.exec(ctx, "DROP DATABASE IF EXISTS "+templateDB)
	if err := s.exec(ctx, "CREATE DATABASE "+templateDB); err != nil {
		return fmt.Errorf("create template database: %w", err)
	}
	pool, err := pgxpool.New(ctx, s.URL(templateDB))
	if err != nil {
		return err
	}
	defer pool.Close()
	if _, err := postgres.Migrate(ctx, pool); err != nil {
		return fmt.Errorf("migrate template: %w", err)
	}
	return nil
}

// NewDatabase creates an empty database (no migrations) and drops it when t ends.
func (s *Server) NewDatabase(t testing.TB) string {
	return s.newDB(t, "")
}

// NewMigratedDatabase clones the migrated template into a new database and
// drops it when t ends.
func (s *Server) NewMigratedDatabase(t testing.TB) string {
	return s.newDB(t, " TEMPLATE "+templateDB)
}

func (s *Server) newDB(t testing.TB, template string) string {
	t.Helper()
	name := fmt.Sprintf("t_%d_%d", os.Getpid(), s.counter.Add(1))
	ctx := context.Background()
	if err := s.exec(ctx, "CREATE DATABASE "+name+template); err != nil {
		t.Fatalf("create test database: %v", err)
	}
	t.Cleanup(func() {
		if err := s.exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Logf("drop test database %s: %v", name, err)
		}
	})
	return s.URL(name)
}

// Exec runs sql as superuser on the maintenance database.
func (s *Server) Exec(ctx context.Context, sql string) error { return s.exec(ctx, sql) }

// Close terminates the container, if this server started one.
func (s *Server) Close() {
	if s.container == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.container.Terminate(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "pgtest: terminate container: %v\n", err)
	}
	s.container = nil
}
