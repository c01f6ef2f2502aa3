#!/usr/bin/env bash
# Build helm (for `wiretide deploy` and the chart's tests) from Go modules into
# ~/.cache/wiretide/helm/helm. Idempotent: an existing binary of the wanted version is
# kept. Needs Go (1.24 or newer) and the Go module proxy; takes ~6 min the first time.
set -euo pipefail

HELM_VERSION=${HELM_VERSION:-v3.22.0}
dest=${WIRETIDE_HELM_DIR:-$HOME/.cache/wiretide/helm}
helm="$dest/helm"

stamp="$dest/.version"
# A binary built the same way without the version flag reports only major.minor.
if [ -x "$helm" ] && [ ! -f "$stamp" ] && "$helm" version --template '{{.Version}}' 2>/dev/null \
    | grep -qxF -e "$HELM_VERSION" -e "${HELM_VERSION%.*}"; then
  echo "$HELM_VERSION" > "$stamp"
fi
if [ -x "$helm" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$HELM_VERSION" ] \
    && "$helm" version --short >/dev/null 2>&1; then
  echo "helm ${HELM_VERSION} already built: $helm"
  exit 0
fi

. "$(dirname "$0")/go-tools.sh"
need_go build-helm.sh 1.24

mkdir -p "$dest"
echo "building helm ${HELM_VERSION} with $(go version | cut -d' ' -f3) into $dest (a few minutes)..."
# -mod=mod: resolve helm's go.mod on its own, whatever the current directory holds.
# The version stamp makes `helm version` say the full version, as release builds do.
(cd "$dest" && GOFLAGS=-mod=mod GOBIN="$dest" go install \
  -ldflags "-X helm.sh/helm/v3/internal/version.version=${HELM_VERSION}" \
  "helm.sh/helm/v3/cmd/helm@${HELM_VERSION}")
echo "$HELM_VERSION" > "$stamp"
"$helm" version --short
