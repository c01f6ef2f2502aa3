#!/bin/sh
# Prepare this host for Wiretide's eBPF capture (TLS uprobes, BPF socket filter).
# Idempotent: safe to run on every install and in CI. Needs root.
#   - BCC from Debian (python3-bpfcc, bpfcc-tools, libbpfcc) and kernel headers
#   - /lib/modules/$(uname -r)/{build,source} -> the installed headers when absent
#   - tracefs mounted at /sys/kernel/tracing
# Wiretide's venv imports Debian's bcc (pure Python over ctypes + libbcc.so) straight from
# /usr/lib/python3/dist-packages/bcc (see producers/tls/bpf.py); no .pth file needed.
set -eu

if [ "$(id -u)" != 0 ]; then
    echo "producers/tls/setup.sh: run as root (it installs apt packages and mounts tracefs)" >&2
    exit 2
fi

need=""
for pkg in python3-bpfcc bpfcc-tools libbpfcc linux-headers-amd64; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
        || need="$need $pkg"
done
if [ -n "$need" ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=900 update -qq
    # shellcheck disable=SC2086
    apt-get -o DPkg::Lock::Timeout=900 install -y -qq --no-install-recommends $need
fi

# BCC compiles against /lib/modules/$(uname -r)/build. On hosts whose running kernel has
# no Debian headers package (custom or cloud kernels), point it at the newest installed
# linux-headers-*-amd64 tree (its common part is pulled in through the Makefile/include).
kver="$(uname -r)"
moddir="/lib/modules/$kver"
# Debian splits headers into linux-headers-<v>-amd64 (build) and -common (source); mirror
# the links Debian makes for its own kernels.
if [ ! -e "$moddir/source/include/linux/kconfig.h" ]; then
    hdr="$(ls -d /usr/src/linux-headers-*-amd64 2>/dev/null | sort -V | tail -n 1)"
    if [ -z "$hdr" ]; then
        echo "producers/tls/setup.sh: no /usr/src/linux-headers-*-amd64 after installing linux-headers-amd64" >&2
        exit 1
    fi
    common="${hdr%-amd64}-common"
    [ -d "$common" ] || common="$hdr"
    mkdir -p "$moddir"
    ln -sfn "$hdr" "$moddir/build"
    ln -sfn "$common" "$moddir/source"
fi

if ! mountpoint -q /sys/kernel/tracing 2>/dev/null; then
    mount -t tracefs nodev /sys/kernel/tracing
fi

echo "producers/tls/setup.sh: eBPF prerequisites ready (kernel $kver)"
