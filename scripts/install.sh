#!/usr/bin/env bash
# Install everything Wiretide needs on a fresh Debian machine (idempotent):
# system packages, a virtualenv in .venv with the project, and the Kafka broker's jars.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v java >/dev/null || need_apt+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || need_apt+=(maven)
command -v tshark >/dev/null || need_apt+=(tshark)
command -v tcpdump >/dev/null || need_apt+=(tcpdump)
command -v curl >/dev/null || need_apt+=(curl)
command -v nginx >/dev/null || need_apt+=(nginx-light)
command -v wrk >/dev/null || need_apt+=(wrk)
command -v redis-server >/dev/null || need_apt+=(redis-server)  # wiretide replay's Redis tests
command -v tcpreplay >/dev/null || need_apt+=(tcpreplay)  # bench/bench_capture.py's sender
command -v ip >/dev/null || need_apt+=(iproute2)
command -v capsh >/dev/null || need_apt+=(libcap2-bin)
command -v mergecap >/dev/null || need_apt+=(tshark)
command -v chromium >/dev/null || need_apt+=(chromium)  # the UI's browser tests
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing system packages: ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=900 update -qq
  apt-get -o DPkg::Lock::Timeout=900 install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

# eBPF (TLS uprobes, the BPF socket filter): BCC from Debian, kernel headers, tracefs.
if [ "$(id -u)" = 0 ]; then
  sh producers/tls/setup.sh >/dev/null
else
  echo "not root: skipping the eBPF set-up (producers/tls/setup.sh); --tls will say what is missing"
fi

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/pip install -q --upgrade pip >/dev/null
.venv/bin/pip install -q -e '.[test]'
# helm (for `wiretide deploy` and the chart's tests), built once from Go modules.
if [ -f scripts/build-helm.sh ]; then
  bash scripts/build-helm.sh
fi
# The other Go tools the tests run (scripts/build-*.sh: Jaeger, ...), built once each under
# its lock in ~/.cache/wiretide; with WIRETIDE_BUILD_IN_BACKGROUND=1 (CI) in the background,
# and a test that needs one runs the same script, which waits for that build.
for build in scripts/build-*.sh; do
  [ "$build" = scripts/build-helm.sh ] && continue
  name=$(basename "$build" .sh)
  if [ "${WIRETIDE_BUILD_IN_BACKGROUND:-0}" = 1 ]; then
    mkdir -p "$HOME/.cache/wiretide"
    log="$HOME/.cache/wiretide/$name.log"
    echo "$name: building in the background (log: $log)"
    nohup nice -n 19 bash "$build" >"$log" 2>&1 </dev/null &
  else
    nice -n 19 bash "$build"
  fi
done
# Fetch (once, cached) the Kafka jars the local broker runs on; format its storage template
# and write its class archive, so a first tap's broker starts quickly.
.venv/bin/python -c "from wiretide.broker import prepare_cache; print('kafka jars in', prepare_cache())"
