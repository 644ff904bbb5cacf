#!/usr/bin/env bash
# Fetches the Swagger UI assets for the /docs page from the npm package
# swagger-ui-dist into transports/connect/apidocs/assets (git-ignored), so
# the next build embeds them. Without them /docs explains how to get them.
set -euo pipefail

VERSION="${SWAGGER_UI_VERSION:-5.35.0}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DEST="$ROOT/transports/connect/apidocs/assets"
FILES=(swagger-ui-bundle.js swagger-ui.css)

if [[ -f "$DEST/swagger-ui-bundle.js" && -f "$DEST/.version" && "$(cat "$DEST/.version")" == "$VERSION" ]]; then
  exit 0
fi
echo "[docs-assets] fetching swagger-ui-dist@$VERSION from npm"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
(cd "$TMP" && npm pack --silent "swagger-ui-dist@$VERSION" >/dev/null 2>&1 && tar xzf swagger-ui-dist-*.tgz)
for f in "${FILES[@]}"; do
  cp "$TMP/package/$f" "$DEST/$f"
done
cp "$TMP/package/LICENSE" "$DEST/swagger-ui-LICENSE"
echo "$VERSION" >"$DEST/.version"
