#!/usr/bin/env bash
# Builds a PostgreSQL 15 container image from Debian packages, for machines
# that have a Docker engine but cannot pull from an image registry.
#
#   scripts/postgres-image.sh [image-name]      (default stockguard/postgres:15)
#
# The image has no entrypoint. The test harness (tests/integration/pgtest)
# knows how to start it: initdb, trust auth for the host, then postgres.
# Skips the build when the image already exists.
set -euo pipefail

IMAGE="${1:-stockguard/postgres:15}"
SUITE="${DEBIAN_SUITE:-bookworm}"

log() { printf '[postgres-image] %s\n' "$*"; }

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
  log "image $IMAGE already present; nothing to do"
  exit 0
fi

# Use the Debian mirror apt already trusts on this machine.
mirror() {
  local m
  m=$(grep -hE '^(URIs:|deb )' /etc/apt/sources.list.d/* /etc/apt/sources.list 2>/dev/null |
    grep -v security | head -n1 | awk '{ if ($1 == "deb") print $2; else print $2 }')
  echo "${m:-http://deb.debian.org/debian}"
}
MIRROR="${DEBIAN_MIRROR:-$(mirror)}"

if ! command -v debootstrap >/dev/null; then
  log "installing debootstrap"
  apt-get install -y -q debootstrap >/dev/null
fi

ROOTFS=$(mktemp -d /tmp/stockguard-pg-rootfs.XXXXXX)
trap 'rm -rf "$ROOTFS"' EXIT

log "debootstrap $SUITE from $MIRROR into $ROOTFS (about a minute)"
debootstrap --variant=minbase --include=postgresql-15 "$SUITE" "$ROOTFS" "$MIRROR" >/tmp/stockguard-debootstrap.log 2>&1 ||
  { tail -n 30 /tmp/stockguard-debootstrap.log; exit 1; }

# Trim what a database container never needs.
rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/usr/share/doc "$ROOTFS"/usr/share/man
mkdir -p "$ROOTFS/var/lib/postgresql/data" "$ROOTFS/var/run/postgresql"
chroot "$ROOTFS" chown -R postgres:postgres /var/lib/postgresql /var/run/postgresql

log "importing as $IMAGE"
tar -C "$ROOTFS" -c . | docker import \
  -c 'USER postgres' \
  -c 'ENV PATH=/usr/lib/postgresql/15/bin:/usr/bin:/bin' \
  -c 'ENV PGDATA=/var/lib/postgresql/data' \
  -c 'EXPOSE 5432' \
  - "$IMAGE" >/dev/null
log "built $IMAGE"
