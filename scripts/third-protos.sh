#!/usr/bin/env bash
# Fetches google/api/{annotations,http}.proto from the npm package
# google-proto-files into third/ (git-ignored) so that buf can resolve the
# REST bindings offline. Nothing under third/ is committed.
set -euo pipefail

VERSION="${GOOGLE_PROTO_FILES_VERSION:-6.0.1}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DEST="$ROOT/third"

if [[ -f "$DEST/google/api/annotations.proto" && -f "$DEST/.version" && "$(cat "$DEST/.version")" == "$VERSION" ]]; then
  exit 0
fi

echo "[third-protos] fetching google-proto-files@$VERSION from npm"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
(cd "$TMP" && npm pack --silent "google-proto-files@$VERSION" >/dev/null 2>&1 && tar xzf google-proto-files-*.tgz)
rm -rf "$DEST"
mkdir -p "$DEST/google/api"
cp "$TMP/package/google/api/annotations.proto" "$TMP/package/google/api/http.proto" "$DEST/google/api/"
echo "$VERSION" >"$DEST/.version"
