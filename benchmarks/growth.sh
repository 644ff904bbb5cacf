#!/usr/bin/env bash
# Does latency stay flat as orders pile up? Measures PlaceOrder latency at a
# constant arrival rate against a database holding 1,000 orders and one
# holding ROWS (default 10,000,000) orders, alternating between them for
# ROUNDS rounds, and compares the medians. The history is synthetic (bulk
# SQL, no ledger rows), so `stockguard verify` is not run here.
#
#   bash benchmarks/growth.sh        (ROWS=10000000 RATE=1000 DURATION=20s ROUNDS=5)
#
# GROWTH_PGCONF adds PostgreSQL settings, e.g. GROWTH_PGCONF="-c wal_compression=lz4".
# WARMUP (default 0) runs each round's load that long first, unmeasured.
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS="${ROWS:-10000000}"
RATE="${RATE:-1000}"
DURATION="${DURATION:-20s}"
ROUNDS="${ROUNDS:-5}"
WARMUP="${WARMUP:-0s}"
PGPORT="${GROWTH_PG_PORT:-55433}"
OUT="benchmarks/results/growth-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$OUT"
log() { printf '\n[growth %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
export STOCKGUARD_JWT_SECRET="growth-secret-0123456789abcdef0123456789ab"
BIN=/tmp/stockguard-growth
go build -o "$BIN" ./cmd/stockguard
go build -o /tmp/stockguard-loadgen ./benchmarks/loadgen
NAME=stockguard-growth-pg
trap 'docker rm -f "$NAME" >/dev/null 2>&1 || true' EXIT
# shellcheck source=benchmarks/postgres.sh
source benchmarks/postgres.sh
# shellcheck disable=SC2086 # GROWTH_PGCONF is a list of settings
start_postgres "$NAME" "$PGPORT" -c shared_buffers=512MB -c track_wal_io_timing=on -c max_wal_size=4GB \
  -c shared_preload_libraries=pg_stat_statements -c track_io_timing=on ${GROWTH_PGCONF:-}
P() { psql -h 127.0.0.1 -p "$PGPORT" -U postgres "$@"; }

# Load both histories first, so the measurements below can alternate
# between them: on a shared two-core machine, latency drifts by a third from
# one 20 s run to the next, more than the effect being measured.
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
SQL
  P -d "$db" -Atc "SELECT 'orders: ' || count(*) FROM orders" >&2
  P -d "$db" -qc "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" >/dev/null
done
P -qc CHECKPOINT

# One server per database, both idle except the one being measured.
declare -A SERVERS PORTS
i=0
for n in 1000 "$ROWS"; do
  i=$((i + 1))
  DATABASE_URL="postgres://postgres@127.0.0.1:$PGPORT/g$n?sslmode=disable" STOCKGUARD_RATE_LIMIT_RPS=0 STOCKGUARD_LOG_LEVEL=warn \
    STOCKGUARD_AUDIT_INTERVAL=0 STOCKGUARD_HTTP_ADDR=127.0.0.1:1808$i STOCKGUARD_ADMIN_ADDR=127.0.0.1:1909$i "$BIN" 2>"$OUT/server-$n.log" &
  SERVERS[$n]=$!
  PORTS[$n]=$i
  for _ in $(seq 1 100); do curl -sf 127.0.0.1:1909$i/readyz >/dev/null && break; sleep 0.1; done
done
trap 'docker rm -f "$NAME" >/dev/null 2>&1 || true; kill "${SERVERS[@]}" 2>/dev/null || true' EXIT
for n in 1000 "$ROWS"; do P -d "g$n" -qc "SELECT pg_stat_statements_reset()" >/dev/null; done
P -qc "SELECT pg_stat_reset_shared('wal')" >/dev/null

# ROUNDS rounds, the order flipping each round (small, big; big, small; ...)
# so that drift over the session weighs on both sides alike. The first round
# starts right after the CHECKPOINT, when every index page a purchase
# touches for the first time is written whole to the WAL.
vmstat -n 5 >"$OUT/vmstat.txt" & VMSTAT=$!
for round in $(seq 1 "$ROUNDS"); do
  order=(1000 "$ROWS")
  (( round % 2 == 0 )) && order=("$ROWS" 1000)
  for n in "${order[@]}"; do
    log "round $round/$ROUNDS at $n existing orders: $RATE purchases/s for $DURATION (with idempotency keys, over 100 items)"
    /tmp/stockguard-loadgen -addr "127.0.0.1:1808${PORTS[$n]}" -server-pid "${SERVERS[$n]}" -protocol grpc-go -mode open -rate "$RATE" -c 2000 \
      -items 100 -keys -duration "$DURATION" -warmup "$WARMUP" -label "$n orders, round $round" -json "$OUT/runs.jsonl" | tee -a "$OUT/table.txt"
  done
done
kill "$VMSTAT"
kill -INT "${SERVERS[@]}"; wait "${SERVERS[@]}" 2>/dev/null || true

# Where each database spent the runs: the costliest statements, with their
# buffer traffic; and the WAL written by all of them.
for n in 1000 "$ROWS"; do
  P -d "g$n" -P pager=off -c "SELECT calls, round(mean_exec_time::numeric, 3) AS mean_ms, round(total_exec_time::numeric) AS total_ms,
      shared_blks_hit AS hit, shared_blks_read AS read, shared_blks_dirtied AS dirtied, round(blk_read_time::numeric) AS read_ms,
      wal_fpi, pg_size_pretty(wal_bytes) AS wal, left(regexp_replace(query, '\s+', ' ', 'g'), 90) AS query
    FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
    ORDER BY total_exec_time DESC LIMIT 10" | tee "$OUT/db-$n.txt" >&2
done
P -P pager=off -c "SELECT wal_records, wal_fpi, pg_size_pretty(wal_bytes) AS wal_bytes, wal_sync, round(wal_sync_time::numeric) AS sync_ms, round(wal_write_time::numeric) AS write_ms FROM pg_stat_wal" | tee "$OUT/wal.txt" >&2

python3 - "$OUT/runs.jsonl" 1000 "$ROWS" <<'PY' | tee "$OUT/growth.txt"
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
small, big = sys.argv[2], sys.argv[3]
by = {n: [r for r in runs if r["label"].startswith(n + " orders")] for n in (small, big)}
print(f"{'round':>5} {'p50 ms ' + small:>16} {'p50 ms ' + big:>20} {'p99 ms ' + small:>16} {'p99 ms ' + big:>20}")
for i, (a, b) in enumerate(zip(by[small], by[big]), 1):
    print(f"{i:>5} {a['p50_ms']:>16.2f} {b['p50_ms']:>20.2f} {a['p99_ms']:>16.2f} {b['p99_ms']:>20.2f}")
for q in ("p50_ms", "p99_ms"):
    a = statistics.median(r[q] for r in by[small])
    b = statistics.median(r[q] for r in by[big])
    print(f"median {q[:3]} over {len(by[small])} rounds: {a:.2f} ms at {small} orders, {b:.2f} ms at {big} ({b/a-1:+.0%})")
bad = [r["label"] for r in runs if r["errors"] or not r.get("conserved", True)]
print("errors or unconserved stock in:", ", ".join(bad) if bad else "none")
PY
log "results in $OUT"
