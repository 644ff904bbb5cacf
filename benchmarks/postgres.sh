# Sourced by the benchmark scripts: start_postgres NAME PORT [SETTINGS...]
# runs PostgreSQL in Docker on the host network, listening on 127.0.0.1:PORT
# with trust authentication for user postgres, and returns once it answers.
# The image is STOCKGUARD_TEST_POSTGRES_IMAGE (default stockguard/postgres:15,
# built by scripts/postgres-image.sh, which has no entrypoint and runs initdb
# itself); an official postgres image works too. SETTINGS are passed to the
# server, e.g. "-c shared_buffers=256MB".
start_postgres() {
  local name=$1 port=$2
  shift 2
  local image="${STOCKGUARD_TEST_POSTGRES_IMAGE:-stockguard/postgres:15}"
  docker rm -f "$name" >/dev/null 2>&1 || true
  if [[ "$image" == *stockguard/postgres* ]]; then
    docker run -d --name "$name" --network host "$image" sh -c \
      "initdb -D /var/lib/postgresql/data -A trust -U postgres >/dev/null && echo 'host all all 0.0.0.0/0 trust' >> /var/lib/postgresql/data/pg_hba.conf && exec postgres -D /var/lib/postgresql/data -c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=/tmp $*" >/dev/null
  else
    docker run -d --name "$name" --network host -e POSTGRES_HOST_AUTH_METHOD=trust "$image" \
      postgres -c listen_addresses=127.0.0.1 -c port="$port" "$@" >/dev/null
  fi
  for _ in $(seq 1 60); do
    psql -h 127.0.0.1 -p "$port" -U postgres -c 'select 1' >/dev/null 2>&1 && return 0
    sleep 1
  done
  echo "PostgreSQL ($image) did not answer on 127.0.0.1:$port within 60 s" >&2
  return 1
}
