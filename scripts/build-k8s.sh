#!/usr/bin/env bash
# Build the test Kubernetes control plane (tests/wiretide/kube) from pinned Go modules into
# ~/.cache/wiretide/k8s/bin: kube-apiserver, kube-controller-manager and kube-scheduler
# v1.35.4, etcd v3.6.5 and kwok v0.8.0 (the kubelet stand-in), plus kwok's stage YAMLs
# in ~/.cache/wiretide/k8s/kwok-stages.yaml.
# Idempotent: returns at once when the binaries of these go.sum files are built; holds
# ~/.cache/wiretide/k8s.lock while building (a second caller waits for the first).
# The wrapper modules (go.mod/go.sum) are in deploy/k8s-testbed/. ~17 min cold on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
src="$PWD/deploy/k8s-testbed"

K8S_VERSION=v1.35.4
dest=${WIRETIDE_K8S_DIR:-$HOME/.cache/wiretide/k8s}
bin="$dest/bin"
stamp="$dest/.version"
# What the binaries are built from: a changed pin (go.mod/go.sum) rebuilds them.
want="$(cat "$src"/*/go.mod "$src"/*/go.sum "$src"/*/*.go | sha256sum | cut -c1-16)"

built() {
  [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] && [ -x "$bin/kube-apiserver" ] \
    && [ -x "$bin/kube-controller-manager" ] && [ -x "$bin/kube-scheduler" ] \
    && [ -x "$bin/etcd" ] && [ -x "$bin/kwok" ] && [ -s "$dest/kwok-stages.yaml" ]
}
if built; then
  echo "k8s control plane already built: $bin"
  exit 0
fi

. "$PWD/scripts/go-tools.sh"  # (cwd: the repository, see above)
need_go build-k8s.sh 1.26

mkdir -p "$bin"
hold_lock "$dest.lock" build-k8s.sh
if built; then
  echo "k8s control plane already built: $bin"
  exit 0
fi

start=$(date +%s)
echo "building the k8s test control plane with $(go version | cut -d' ' -f3) into $bin (~17 min cold)..."
# The go.mod/go.sum are committed: -mod=readonly refuses to build anything else.
export GOFLAGS="-mod=readonly -buildvcs=false"
gobuild() {  # module dir, output name, package, extra args
  local dir=$1 out=$2 pkg=$3
  shift 3
  (cd "$src/$dir" && nice -n 19 go build "$@" -o "$bin/.$out.new" "$pkg")
  mv -f "$bin/.$out.new" "$bin/$out"
  echo "  built $out in $(($(date +%s) - start)) s"
}
gobuild etcd etcd .
gobuild kwok kwok sigs.k8s.io/kwok/cmd/kwok
v=${K8S_VERSION#v}
version_flags="-X k8s.io/component-base/version.gitVersion=$K8S_VERSION \
  -X k8s.io/component-base/version.gitMajor=${v%%.*} \
  -X k8s.io/component-base/version.gitMinor=$(echo "$v" | cut -d. -f2) \
  -X k8s.io/component-base/version.gitTreeState=clean"
for cmd in kube-apiserver kube-controller-manager kube-scheduler; do
  gobuild apiserver "$cmd" "k8s.io/kubernetes/cmd/$cmd" -ldflags "$version_flags"
done

# kwok exits with "no stages found" without stage YAMLs: the module's fast node and pod stages.
kwok_dir=$(cd "$src/kwok" && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)
for f in node/fast/node-initialize.yaml node/heartbeat/node-heartbeat.yaml \
    pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
  echo "---"
  cat "$kwok_dir/kustomize/stage/$f"
done > "$dest/kwok-stages.yaml"

echo "$want" > "$stamp"
echo "k8s control plane built in $(($(date +%s) - start)) s: $bin"
"$bin/kube-apiserver" --version
