# stockguard developer commands. `just` lists them.

set shell := ["bash", "-euo", "pipefail", "-c"]

# List the recipes.
default:
    @just --list --unsorted

# Run the service; in-memory storage unless DATABASE_URL is set.
run *ARGS:
    bash scripts/docs-assets.sh
    go run ./cmd/stockguard {{ ARGS }}

# Every test: gofmt check, go vet, unit and integration tests with the race detector, brief fuzzing.
test: fmt-check vet
    bash scripts/docs-assets.sh
    go test -race -count=1 -timeout 30m ./...

# Unit tests only (no Docker needed).
test-unit:
    go test -race -count=1 $(go list ./... | grep -v /tests/integration)

# Fail when a Go file is not gofmt-formatted.
fmt-check:
    @out=$(gofmt -l $(git ls-files '*.go')); if [ -n "$out" ]; then echo "not gofmt-formatted:"; echo "$out"; exit 1; fi

# go vet every package.
vet:
    go vet ./...

# Regenerate gen/ (Go, Connect stubs, OpenAPI), the gomock mocks and the /docs assets.
generate:
    bash scripts/third-protos.sh
    bash scripts/docs-assets.sh
    go tool buf lint
    go tool buf format --diff --exit-code
    go tool buf generate
    go run ./scripts/openapi-augment gen/openapi/openapi.yaml
    go generate ./...

# Fail when generated code differs from what `just generate` produces.
check-generate: generate
    @git add -N gen modules transports >/dev/null 2>&1 || true
    @if ! git diff --exit-code --stat -- gen modules transports; then echo "generated code is stale: run 'just generate' and commit"; exit 1; fi

# Check the contract for breaking changes against main.
breaking against="main":
    bash scripts/third-protos.sh
    go tool buf breaking --against '.git#branch={{ against }}'

# Lint Go with golangci-lint and protos with buf.
lint:
    go tool buf lint
    go tool golangci-lint run ./...

# Fuzz every RPC's decoding and validation for FUZZTIME each (default 30s); seeds live in testdata/fuzz.
fuzz FUZZTIME="30s":
    for f in $(go test -list '^Fuzz' ./transports/connect/ | grep '^Fuzz'); do go test -run '^$' -fuzz "^$f\$" -fuzztime {{ FUZZTIME }} ./transports/connect/; done

# Check the shipped alerting rules and dashboard (needs promtool: Debian package prometheus).
check-deploy:
    promtool check rules deploy/prometheus/alerts.yml
    python3 -c "import json; json.load(open('deploy/grafana/stockguard.json'))"

# Microbenchmarks with allocation counts, COUNT samples each; compare runs with `go run golang.org/x/perf/cmd/benchstat@latest old.txt new.txt` (6 samples or more).
bench COUNT="1":
    go test -run '^$' -bench . -benchmem -count {{ COUNT }} $(go list ./... | grep -v /tests/integration) | tee benchmarks/results/bench-latest.txt

# The database side of a coalesced batch, hot item against 10,000 items, in ROUNDS fresh databases (PostgreSQL in Docker).
bench-db:
    bash benchmarks/pgbatch.sh

# Fan-out benchmark: N WebSocket clients, a burst of changes, stockguard beside a chat-style hub.
fanout N="10000" BURST="50":
    go build -o /tmp/stockguard-bench ./cmd/stockguard
    go run ./benchmarks/fanout -server-bin /tmp/stockguard-bench -n {{ N }} -burst {{ BURST }} -json benchmarks/results/fanout-{{ N }}.json

# The side-by-side load test: pgbench baseline, stockguard with coalescing on and off, wrk; prints ratios.
loadtest:
    bash benchmarks/loadtest.sh

# Latency at 1,000 against 10 million existing orders, alternating rounds; prints the medians.
growth:
    bash benchmarks/growth.sh

# Build the PostgreSQL image from Debian packages (for machines without registry access).
postgres-image:
    bash scripts/postgres-image.sh
