#!/usr/bin/env bash
# Build Jaeger (the OTLP receiver and query API the OpenTelemetry export's tests talk to)
# from Go modules into ~/.cache/wiretide/jaeger/jaeger. Idempotent: a built binary of the
# wanted version is kept. Holds ~/.cache/wiretide/jaeger.lock while building, so a test
# that calls this script while install.sh builds in the background waits for that build.
set -euo pipefail

# v1.75.0 is the approved release of the module (cmd/jaeger is Jaeger's v2 binary).
JAEGER_VERSION=${JAEGER_VERSION:-v1.75.0}
cache=${WIRETIDE_CACHE:-$HOME/.cache/wiretide}
dest=${WIRETIDE_JAEGER_DIR:-$cache/jaeger}
jaeger="$dest/jaeger"
stamp="$dest/.version"

built() { [ -x "$jaeger" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$JAEGER_VERSION" ]; }
if built; then
  echo "jaeger ${JAEGER_VERSION} already built: $jaeger"
  exit 0
fi

. "$(dirname "$0")/go-tools.sh"
need_go build-jaeger.sh 1.24

mkdir -p "$dest"
hold_lock "$cache/jaeger.lock" build-jaeger.sh
if built; then  # another run built it while we waited on the lock
  echo "jaeger ${JAEGER_VERSION} already built: $jaeger"
  exit 0
fi
echo "building jaeger ${JAEGER_VERSION} with $(go version | cut -d' ' -f3) into $dest (several minutes)..."
mod="$dest/mod"
mkdir -p "$mod"
# Jaeger's go.mod has replace directives, so `go install pkg@version` refuses it: a module
# of our own takes it as a tool dependency and builds it from there.
[ -f "$mod/go.mod" ] || (cd "$mod" && go mod init wiretide.local/jaeger-build >/dev/null 2>&1)
start=$(date +%s)
(cd "$mod" && nice -n 19 go get -tool "github.com/jaegertracing/jaeger/cmd/jaeger@${JAEGER_VERSION}" \
  && nice -n 19 go build -trimpath -o "$jaeger.tmp" github.com/jaegertracing/jaeger/cmd/jaeger)
mv "$jaeger.tmp" "$jaeger"
echo "$JAEGER_VERSION" > "$stamp"
echo "jaeger ${JAEGER_VERSION} built in $(( $(date +%s) - start )) s: $jaeger"
