#!/usr/bin/env bash
# The side-by-side load test: PostgreSQL in a container, the pgbench
# baseline, then stockguard under loadgen (coalescing on and off), and wrk
# for an outside view. Prints a table of every run as a ratio to pgbench.
# Loopback only; every step is bounded in time.
#
#   bash benchmarks/loadtest.sh            (or: just loadtest)
#
# DURATION (default 15s) sets each run's measured length; WARMUP (2s) the
# same load run before it, unmeasured, so that a cold start (connections,
# prepared statements, the first batches) is not counted as steady-state
# latency; CLIENTS (1000) the closed-loop callers.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${DURATION:-15s}"
WARMUP="${WARMUP:-2s}"
CLIENTS="${CLIENTS:-1000}"
IMAGE="${STOCKGUARD_TEST_POSTGRES_IMAGE:-stockguard/postgres:15}"
PGPORT="${LOADTEST_PG_PORT:-55432}"
OUT="benchmarks/results/loadtest-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$OUT"
JSON="$OUT/runs.jsonl"
# mark notes a step in the run's timeline (once the timeline exists).
mark() { if [[ -f "$OUT/timeline.txt" ]]; then echo "$(date +%H:%M:%S) --- $*" >> "$OUT/timeline.txt"; fi; }
log() {
  printf '\n[loadtest %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2
  mark "$*"
}

export STOCKGUARD_JWT_SECRET="loadtest-secret-0123456789abcdef0123456789"
BIN=/tmp/stockguard-loadtest
LOADGEN=/tmp/stockguard-loadgen
go build -o "$BIN" ./cmd/stockguard
go build -o "$LOADGEN" ./benchmarks/loadgen

# --- PostgreSQL --------------------------------------------------------------
NAME=stockguard-loadtest-pg
cleanup() {
  [[ -n "${SAMPLER:-}" ]] && kill "$SAMPLER" 2>/dev/null || true
  docker rm -f "$NAME" >/dev/null 2>&1 || true
  [[ -n "${SERVER:-}" ]] && kill "$SERVER" 2>/dev/null || true
}
trap cleanup EXIT
log "starting PostgreSQL ($IMAGE) on 127.0.0.1:$PGPORT"
PGCONF="-c max_connections=300 -c shared_buffers=256MB -c synchronous_commit=on"
# shellcheck source=benchmarks/postgres.sh
source benchmarks/postgres.sh
# shellcheck disable=SC2086 # PGCONF is a list of settings
start_postgres "$NAME" "$PGPORT" $PGCONF
PGVERSION=$(psql -h 127.0.0.1 -p "$PGPORT" -U postgres -Atc 'show server_version')

# One line a second for the whole run, so a slow phase can be explained
# afterwards: CPU (vmstat: runnable, user, system, idle, I/O wait), then
# PostgreSQL's checkpoints, WAL full-page images and bytes, and the
# autovacuum workers at work.
echo "# time r us sy id wa | checkpoints wal_fpi wal_bytes autovacuum_workers" > "$OUT/timeline.txt"
(
  while :; do
    cpu=$(vmstat 1 2 | tail -1 | awk '{print $1, $13, $14, $15, $16}')
    pg=$(psql -h 127.0.0.1 -p "$PGPORT" -U postgres -Atc "SELECT b.checkpoints_timed + b.checkpoints_req, w.wal_fpi, pg_size_pretty(w.wal_bytes),
      (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker')
      FROM pg_stat_bgwriter b, pg_stat_wal w" 2>/dev/null | tr '|' ' ')
    echo "$(date +%H:%M:%S) $cpu $pg"
  done
) >> "$OUT/timeline.txt" 2>/dev/null &
SAMPLER=$!
fresh_db() {
  psql -h 127.0.0.1 -p "$PGPORT" -U postgres -qc "DROP DATABASE IF EXISTS $1" -c "CREATE DATABASE $1" >/dev/null
  DATABASE_URL="postgres://postgres@127.0.0.1:$PGPORT/$1?sslmode=disable" "$BIN" migrate >/dev/null 2>&1
}

# --- pgbench baseline ----------------------------------------------------------
log "pgbench baseline: the naive purchase transaction on one hot row, 8 and 64 clients"
fresh_db pgbench
PGB=/usr/lib/postgresql/15/bin/pgbench
psql -h 127.0.0.1 -p "$PGPORT" -U postgres -d pgbench -qc \
  "INSERT INTO items (id, sku, name, initial_stock, available, reserved, sold, version, create_time)
   VALUES ('00000000-0000-7000-8000-000000000001', 'HOT', 'hot', 1000000000, 1000000000, 0, 0, 1, now())" >/dev/null
cat > "$OUT/naive.sql" <<'SQL'
BEGIN;
SELECT available FROM items WHERE id = '00000000-0000-7000-8000-000000000001' FOR UPDATE;
UPDATE items SET available = available - 1, sold = sold + 1, version = version + 1 WHERE id = '00000000-0000-7000-8000-000000000001';
INSERT INTO orders (id, customer_id, status, request_hash, create_time, update_time) VALUES (gen_random_uuid(), 'pgbench', 2, 'x', now(), now());
COMMIT;
SQL
declare -A PGTPS
for c in 8 64; do
  tps=$("$PGB" -h 127.0.0.1 -p "$PGPORT" -U postgres -n -c "$c" -j 2 -T 15 -f "$OUT/naive.sql" pgbench 2>/dev/null | awk '/^tps/ {print int($3); exit}')
  PGTPS[$c]=$tps
  log "pgbench -c $c: $tps tps"
  echo "{\"label\":\"pgbench naive c=$c\",\"tps\":$tps}" >>"$JSON"
done
BASE=${PGTPS[64]}

# --- stockguard ------------------------------------------------------------------
start_server() { # coalesce(true|false) dbname
  fresh_db "$2"
  DATABASE_URL="postgres://postgres@127.0.0.1:$PGPORT/$2?sslmode=disable" STOCKGUARD_COALESCE="$1" \
    STOCKGUARD_RATE_LIMIT_RPS=0 STOCKGUARD_LOG_LEVEL=warn STOCKGUARD_DB_MAX_CONNS=32 STOCKGUARD_AUDIT_INTERVAL=0 \
    STOCKGUARD_HTTP_ADDR=127.0.0.1:18080 STOCKGUARD_ADMIN_ADDR=127.0.0.1:19090 "$BIN" 2>"$OUT/server-$2.log" &
  SERVER=$!
  for _ in $(seq 1 100); do curl -sf 127.0.0.1:19090/readyz >/dev/null && return; sleep 0.1; done
  echo "server did not start" >&2; exit 1
}
stop_server() { kill -INT "$SERVER"; wait "$SERVER" 2>/dev/null || true; SERVER=; }
lg() {
  mark "loadgen $*"
  "$LOADGEN" -addr 127.0.0.1:18080 -server-pid "$SERVER" -duration "$DURATION" -warmup "$WARMUP" -json "$JSON" "$@"
  mark "loadgen done"
}

log "stockguard, coalescing on"
start_server true coalesced
# gRPC is driven by grpc-go (what Go services use) and, in one row, by the
# connect-go client speaking gRPC; Connect by connect-go.
lg -label "hot item, grpc, coalesced" -protocol grpc-go -mode closed -c "$CLIENTS" -items 1 | tee -a "$OUT/table.txt"
PEAK=$(tail -n1 "$JSON" | python3 -c 'import json,sys; print(int(json.load(sys.stdin)["ok_per_second"]))')
lg -label "hot item, connect, coalesced" -protocol connect -mode closed -c "$CLIENTS" -items 1 | tee -a "$OUT/table.txt"
lg -label "hot item, grpc (connect-go client)" -protocol grpc -mode closed -c "$CLIENTS" -items 1 | tee -a "$OUT/table.txt"
lg -label "hot item, grpc, open 50%" -protocol grpc-go -mode open -rate $((PEAK / 2)) -c "$CLIENTS" -items 1 | tee -a "$OUT/table.txt"
lg -label "10,000 items, grpc, coalesced" -protocol grpc-go -mode closed -c "$CLIENTS" -items 10000 | tee -a "$OUT/table.txt"
lg -label "hot item, rest, coalesced" -protocol rest -mode closed -c 256 -items 1 | tee -a "$OUT/table.txt"
# Target 3 compares two workloads measured at different moments, and on
# these machines two 15 s runs of the same workload differ by up to a fifth.
# So the two alternate for ALT_ROUNDS rounds, the order flipping each round,
# and their medians are compared.
ALT_ROUNDS="${ALT_ROUNDS:-3}"
log "target 3, alternating: hot item and 10,000 items over gRPC, $ALT_ROUNDS rounds of $DURATION"
for round in $(seq 1 "$ALT_ROUNDS"); do
  order="1 10000"
  if ((round % 2 == 0)); then order="10000 1"; fi
  for n in $order; do
    lg -label "alternating $round: $n items" -protocol grpc-go -mode closed -c "$CLIENTS" -items "$n" | tee -a "$OUT/table.txt"
  done
done
python3 - "$JSON" <<'PY' | tee "$OUT/alternating.txt"
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
alt = [r for r in runs if r.get("label", "").startswith("alternating ")]
hot = [r["ok_per_second"] for r in alt if r["items"] == 1]
spread = [r["ok_per_second"] for r in alt if r["items"] == 10000]
print("hot item:     ", " ".join(f"{v:.0f}" for v in hot), f"median {statistics.median(hot):.0f}/s")
print("10,000 items: ", " ".join(f"{v:.0f}" for v in spread), f"median {statistics.median(spread):.0f}/s")
print(f"10,000 items / hot item, medians: {statistics.median(spread) / statistics.median(hot):.2f}")
PY
command -v wrk >/dev/null || (apt-get install -y -q wrk >/dev/null 2>&1 || true)
if command -v wrk >/dev/null; then
  ITEM=$(curl -s '127.0.0.1:18080/v1/items?pageSize=1' | python3 -c 'import json,sys; print(json.load(sys.stdin)["items"][0]["id"])')
  log "wrk: GET /v1/items/{id} (REST, outside view)"
  wrk -t2 -c256 -d"$DURATION" --latency "http://127.0.0.1:18080/v1/items/$ITEM" | tee "$OUT/wrk.txt"
fi
CPUPROFILE="$OUT/cpu-hot-item.pprof"
( sleep 2; curl -s -o "$CPUPROFILE" "127.0.0.1:19090/debug/pprof/profile?seconds=10" ) &
PROFILER=$!
"$LOADGEN" -addr 127.0.0.1:18080 -duration 14s -label profiled -protocol grpc-go -mode closed -c "$CLIENTS" -items 1 >/dev/null 2>&1
wait "$PROFILER"
go tool pprof -top -nodecount=25 "$BIN" "$CPUPROFILE" >"$OUT/cpu-top.txt" 2>/dev/null || true
DATABASE_URL="postgres://postgres@127.0.0.1:$PGPORT/coalesced?sslmode=disable" "$BIN" verify | tee "$OUT/verify-coalesced.txt"
stop_server

log "stockguard, coalescing off (the naive path)"
start_server false naive
lg -label "hot item, grpc, naive" -protocol grpc-go -mode closed -c "$CLIENTS" -items 1 | tee -a "$OUT/table.txt"
lg -label "hot item, connect, naive" -protocol connect -mode closed -c "$CLIENTS" -items 1 | tee -a "$OUT/table.txt"
DATABASE_URL="postgres://postgres@127.0.0.1:$PGPORT/naive?sslmode=disable" "$BIN" verify | tee "$OUT/verify-naive.txt"
stop_server

log "overload: offered twice the hot-item peak, open loop; the queue bound sheds the excess"
# A fresh server with the default queue bound (4,096 per lane). The arrival
# rate is fixed whatever the latency, so without a bound the queue, and the
# memory holding it, would grow for the whole run. The generator keeps both
# cores here (-procs 0), as in the overload runs before -procs existed, so
# that they stay comparable.
start_server true overload
OVERLOAD_DURATION="${OVERLOAD_DURATION:-30s}"
"$LOADGEN" -addr 127.0.0.1:18080 -server-pid "$SERVER" -duration "$OVERLOAD_DURATION" -json "$JSON" \
  -label "overload: hot item, open 2x peak" -protocol grpc-go -conns 32 -procs 0 -mode open -rate $((PEAK * 2)) -c 20000 -items 1 |
  tee -a "$OUT/table.txt"
tail -n1 "$JSON" | python3 -c '
import json, sys
r = json.load(sys.stdin)
rss = r.get("server_rss_mb_per_second", [])
print("server RSS each second (MB):", " ".join(f"{v:.0f}" for v in rss))
if len(rss) >= 4:
    half = len(rss) // 2
    peak = r.get("server_peak_rss_mb", 0)
    print(f"first half max {max(rss[:half]):.0f} MB, second half max {max(rss[half:]):.0f} MB, peak {peak:.0f} MB")
print("outcomes:", json.dumps(r["errors"]), "ok:", r["ok"])
' | tee "$OUT/overload-rss.txt"
DATABASE_URL="postgres://postgres@127.0.0.1:$PGPORT/overload?sslmode=disable" "$BIN" verify | tee "$OUT/verify-overload.txt"
stop_server

log "ratios to pgbench (naive transaction, 64 clients: $BASE tps; 8 clients: ${PGTPS[8]} tps), PostgreSQL $PGVERSION"
python3 - "$JSON" "$BASE" <<'PY' | tee "$OUT/ratios.txt"
import json, sys
base = float(sys.argv[2])
print(f"{'run':36} {'ok/s':>9} {'x pgbench':>10} {'p50 ms':>8} {'p99 ms':>8} {'cpu %':>6} {'lg cpu %':>8} {'errors'}")
for line in open(sys.argv[1]):
    r = json.loads(line)
    if "tps" in r:
        print(f"{r['label']:36} {r['tps']:>9} {r['tps']/base:>10.2f}")
        continue
    print(f"{r['label']:36} {r['ok_per_second']:>9.0f} {r['ok_per_second']/base:>10.2f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {r.get('server_cpu_percent',0):>6.0f} {r.get('loadgen_cpu_percent',0):>8.0f} {r['errors']}")
PY
log "results in $OUT"
