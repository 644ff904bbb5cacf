#!/usr/bin/env bash
# Does latency stay flat as orders pile up? Measures PlaceOrder latency at a
# constant arrival rate against a database holding 1,000 orders, then one
# holding ROWS (default 10,000,000) orders. The history is synthetic (bulk
# SQL, no ledger rows), so `stockguard verify` is not run here.
#
#   bash benchmarks/growth.sh        (ROWS=10000000 RATE=1000 DURATION=20s)
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS="${ROWS:-10000000}"
RATE="${RATE:-1000}"
DURATION="${DURATION:-20s}"
IMAGE="${STOCKGUARD_TEST_POSTGRES_IMAGE:-stockguard/postgres:15}"
PGPORT="${GROWTH_PG_PORT:-55433}"
OUT="benchmarks/results/growth-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$OUT"
log() { printf '\n[growth %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
export STOCKGUARD_JWT_SECRET="growth-secret-0123456789abcdef0123456789ab"
BIN=/tmp/stockguard-growth
go build -o "$BIN" ./cmd/stockguard
go build -o /tmp/stockguard-loadgen ./benchmarks/loadgen
NAME=stockguard-growth-pg
docker rm -f "$NAME" >/dev/null 2>&1 || true
trap 'docker rm -f "$NAME" >/dev/null 2>&1 || true; [[ -n "${SERVER:-}" ]] && kill "$SERVER" 2>/dev/null || true' EXIT
docker run -d --name "$NAME" --network host "$IMAGE" sh -c \
  "initdb -D /var/lib/postgresql/data -A trust -U postgres >/dev/null && echo 'host all all 0.0.0.0/0 trust' >> /var/lib/postgresql/data/pg_hba.conf && exec postgres -D /var/lib/postgresql/data -c listen_addresses=127.0.0.1 -c port=$PGPORT -c unix_socket_directories=/tmp -c shared_buffers=512MB -c track_wal_io_timing=on -c max_wal_size=4GB -c shared_preload_libraries=pg_stat_statements -c track_io_timing=on" >/dev/null
for _ in $(seq 1 60); do psql -h 127.0.0.1 -p "$PGPORT" -U postgres -c 'select 1' >/dev/null 2>&1 && break; sleep 1; done
P() { psql -h 127.0.0.1 -p "$PGPORT" -U postgres "$@"; }

for n in 1000 "$ROWS"; do
  db="g$n"
  P -qc "CREATE DATABASE $db" >/dev/null
  DATABASE_URL="postgres://postgres@127.0.0.1:$PGPORT/$db?sslmode=disable" "$BIN" migrate >/dev/null 2>&1
  log "loading $n orders of 10,000 customers over 1,000 items"
  P -d "$db" -q <<SQL
SET synchronous_commit = off;
INSERT INTO items (id, sku, name, initial_stock, available, reserved, sold, version, create_time)
  SELECT gen_random_uuid(), 'HIST-' || i, 'history', 0, 0, 0, 0, 1, now() FROM generate_series(1, 1000) i;
CREATE TEMP TABLE hist_items AS SELECT row_number() OVER () AS n, id FROM items;
INSERT INTO orders (id, customer_id, status, idempotency_key, request_hash, create_time, update_time)
  SELECT gen_random_uuid(), 'load-' || (i % 10000), 2, 'hist-' || i, 'h', now() - (i || ' seconds')::interval, now()
  FROM generate_series(1, $n) i;
INSERT INTO order_lines (order_id, line_no, item_id, quantity)
  SELECT o.id, 0, h.id, 1 FROM (SELECT id, row_number() OVER () AS r FROM orders) o JOIN hist_items h ON h.n = 1 + (o.r % 1000);
VACUUM ANALYZE;
CHECKPOINT;
SQL
  P -d "$db" -Atc "SELECT 'orders: ' || count(*) FROM orders" >&2
  P -d "$db" -qc "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" >/dev/null
  DATABASE_URL="postgres://postgres@127.0.0.1:$PGPORT/$db?sslmode=disable" STOCKGUARD_RATE_LIMIT_RPS=0 STOCKGUARD_LOG_LEVEL=warn \
    STOCKGUARD_AUDIT_INTERVAL=0 STOCKGUARD_HTTP_ADDR=127.0.0.1:18081 STOCKGUARD_ADMIN_ADDR=127.0.0.1:19091 "$BIN" 2>"$OUT/server-$n.log" &
  SERVER=$!
  for _ in $(seq 1 100); do curl -sf 127.0.0.1:19091/readyz >/dev/null && break; sleep 0.1; done
  # Two runs back to back: the first starts right after the load's
  # CHECKPOINT, when every index page a purchase touches for the first time
  # is written whole to the WAL (full-page images); the second is the
  # steady state that follows. Statement statistics cover the second.
  for phase in "after checkpoint" "steady"; do
    [[ "$phase" == steady ]] && P -d "$db" -qc "SELECT pg_stat_statements_reset(), pg_stat_reset_shared('wal')" >/dev/null
    log "measuring at $n existing orders ($phase): $RATE purchases/s for $DURATION (with idempotency keys, over 100 items)"
    # The machine's CPU split and I/O wait while it runs, every 5 s.
    vmstat -n 5 >"$OUT/vmstat-$n-${phase// /-}.txt" & VMSTAT=$!
    /tmp/stockguard-loadgen -addr 127.0.0.1:18081 -server-pid "$SERVER" -protocol grpc-go -mode open -rate "$RATE" -c 2000 \
      -items 100 -keys -duration "$DURATION" -label "$n orders, $phase" -json "$OUT/runs.jsonl" | tee -a "$OUT/table.txt"
    kill "$VMSTAT"
  done
  kill -INT "$SERVER"; wait "$SERVER" 2>/dev/null || true; SERVER=
  # Where the database spent the run: the costliest statements, with their
  # buffer traffic, and the WAL written.
  P -d "$db" -P pager=off -c "SELECT calls, round(mean_exec_time::numeric, 3) AS mean_ms, round(total_exec_time::numeric) AS total_ms,
      shared_blks_hit AS hit, shared_blks_read AS read, shared_blks_dirtied AS dirtied, round(blk_read_time::numeric) AS read_ms,
      wal_fpi, pg_size_pretty(wal_bytes) AS wal, left(regexp_replace(query, '\s+', ' ', 'g'), 90) AS query
    FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
    ORDER BY total_exec_time DESC LIMIT 10" \
    -c "SELECT wal_records, wal_fpi, pg_size_pretty(wal_bytes) AS wal_bytes, wal_sync, round(wal_sync_time::numeric) AS sync_ms, round(wal_write_time::numeric) AS write_ms FROM pg_stat_wal" \
    | tee "$OUT/db-$n.txt" >&2
done
python3 - "$OUT/runs.jsonl" <<'PY' | tee "$OUT/growth.txt"
import json, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
for phase in ("after checkpoint", "steady"):
    same = [r for r in runs if r["label"].endswith(phase)]
    a, b = same[0], same[-1]  # the fewest orders, the most
    print(f"{phase:17} p50 {a['p50_ms']:.2f} -> {b['p50_ms']:.2f} ms ({b['p50_ms']/a['p50_ms']-1:+.0%}), "
          f"p99 {a['p99_ms']:.2f} -> {b['p99_ms']:.2f} ms ({b['p99_ms']/a['p99_ms']-1:+.0%})")
PY
log "results in $OUT"
