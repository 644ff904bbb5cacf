package integration

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net/http"
	"strings"
	"testing"
)

// grpcHealth calls grpc.health.v1.Health/Check over real gRPC framing and
// returns the status number (1 SERVING, 2 NOT_SERVING).
func grpcHealth(t *testing.T, base string) int {
	t.Helper()
	frame := []byte{0, 0, 0, 0, 0} // uncompressed, empty HealthCheckRequest
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, base+"/grpc.health.v1.Health/Check", bytes.NewReader(frame))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("TE", "trailers")
	res, err := h2cClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	if res.Trailer.Get("Grpc-Status") != "0" || len(body) < 5 {
		t.Fatalf("health check: grpc-status %q, body %x", res.Trailer.Get("Grpc-Status"), body)
	}
	msg := body[5 : 5+binary.BigEndian.Uint32(body[1:5])]
	if len(msg) == 0 {
		return 0 // UNKNOWN is the zero value
	}
	if len(msg) != 2 || msg[0] != 0x08 {
		t.Fatalf("unexpected HealthCheckResponse %x", msg)
	}
	return int(msg[1])
}

// gRPC health and /readyz follow the database.
func TestHealth_FollowsTheDatabase(t *testing.T) {
	srv := startServer(t, postgresStore)
	if got := grpcHealth(t, srv.base); got != 1 {
		t.Fatalf("health with the database up = %d, want 1 (SERVING)", got)
	}
	res, body := restDo(t, http.MethodGet, srv.adminBase+"/readyz", nil, nil)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("/readyz = %d %s", res.StatusCode, body)
	}
	name := srv.cfg.DatabaseURL[strings.LastIndex(srv.cfg.DatabaseURL, "/")+1:]
	name = strings.SplitN(name, "?", 2)[0]
	if err := pg.Exec(context.Background(), "DROP DATABASE "+name+" WITH (FORCE)"); err != nil {
		t.Fatal(err)
	}
	if got := grpcHealth(t, srv.base); got != 2 {
		t.Fatalf("health with the database gone = %d, want 2 (NOT_SERVING)", got)
	}
	res, body = restDo(t, http.MethodGet, srv.adminBase+"/readyz", nil, nil)
	if res.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "postgres") {
		t.Fatalf("/readyz with the database gone = %d %s", res.StatusCode, body)
	}
}
