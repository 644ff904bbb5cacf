#!/usr/bin/env bash
# The database side of a coalesced batch, hot against spread: runs
# BenchmarkPlaceBatchPostgres for ROUNDS rounds (default 5), each against a
# fresh database in one PostgreSQL container, and prints each round's
# spread ÷ hot cost per purchase. Nothing else runs on the machine meanwhile,
# so these figures vary far less than the load test's.
#
#   bash benchmarks/pgbatch.sh        (or: just bench-db; ROUNDS=5 BATCHES=400)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${ROUNDS:-5}"
BATCHES="${BATCHES:-400}"
PGPORT="${PGBATCH_PG_PORT:-55434}"
OUT="benchmarks/results/pgbatch-$(date +%Y%m%d-%H%M%S).txt"
NAME=stockguard-pgbatch-pg
trap 'docker rm -f "$NAME" >/dev/null 2>&1 || true' EXIT
# shellcheck source=benchmarks/postgres.sh
source benchmarks/postgres.sh
start_postgres "$NAME" "$PGPORT" -c shared_buffers=256MB -c synchronous_commit=on
go test -c -o /tmp/stockguard-benchmarks.test ./benchmarks
for round in $(seq 1 "$ROUNDS"); do
  psql -h 127.0.0.1 -p "$PGPORT" -U postgres -qc "DROP DATABASE IF EXISTS bench" -c "CREATE DATABASE bench" 2>/dev/null
  STOCKGUARD_BENCH_DATABASE_URL="postgres://postgres@127.0.0.1:$PGPORT/bench?sslmode=disable" \
    /tmp/stockguard-benchmarks.test -test.run '^$' -test.bench PlaceBatchPostgres -test.benchtime "${BATCHES}x" | grep '^Benchmark' | tee -a "$OUT"
done
# Each round's two lines: hot, then spread; the ratio is taken within a round.
awk '/hot/ {h=$(NF-1)} /spread/ {r++; printf "round %d: hot %.1f µs, spread %.1f µs per purchase, spread ÷ hot %.2f\n", r, h/1000, $(NF-1)/1000, $(NF-1)/h}' "$OUT"
echo "results in $OUT"
