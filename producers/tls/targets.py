"""Which files to put uprobes on for a process: its libssl, or its Go binary."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import lru_cache

from producers.tls.elf import (
    GO_TLS_READ,
    GO_TLS_WRITE,
    NotElfError,
    function_symbols,
    go_version,
    static_openssl_functions,
)
from producers.tls.elf import go_tls_functions as _go_tls_functions

OPENSSL_FUNCTIONS = ("SSL_write", "SSL_read", "SSL_write_ex", "SSL_read_ex", "SSL_do_handshake")
_LIBSSL = re.compile(r"/lib(ssl|boringssl)[^/]*\.so[^/]*$")


@dataclass(frozen=True, slots=True)
class ProbeTarget:
    """One file to attach to. `path` opens it from our mount namespace; `identity` is
    (st_dev, st_ino), the same for every process that maps it (uprobes are per inode)."""

    kind: str  # "openssl" | "go"
    path: str
    identity: tuple[int, int]
    functions: tuple[str, ...]
    problem: str = ""  # why it cannot be traced (then nothing is attached)


def _identity(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_mtime_ns


def _in_root(pid: int, path: str) -> str:
    """The process's file seen through its root, so other mount namespaces work."""
    return f"/proc/{pid}/root{path}"


def openssl_targets(pid: int) -> list[ProbeTarget]:
    try:
        with open(f"/proc/{pid}/maps") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    seen: set[str] = set()
    out = []
    for line in lines:
        parts = line.split(maxsplit=5)
        if len(parts) < 6 or not _LIBSSL.search(parts[5]) or parts[5] in seen:
            continue
        seen.add(parts[5])
        path = _in_root(pid, parts[5])
        ident = _identity(path)
        if ident is None:
            continue
        names = _openssl_functions(path, ident)
        if names:
            out.append(ProbeTarget("openssl", path, ident[:2], names))
    return out


@lru_cache(maxsize=256)
def _openssl_functions(path: str, _identity: tuple[int, int, int]) -> tuple[str, ...]:
    """The SSL_* functions a library exports (cached per file identity)."""
    try:
        symbols = function_symbols(path, frozenset(OPENSSL_FUNCTIONS))
    except (OSError, NotElfError, ValueError, IndexError):
        return ()
    return tuple(n for n in OPENSSL_FUNCTIONS if n in symbols)


def exe_target(pid: int) -> ProbeTarget | None:
    """The process's executable when it is a Go binary with crypto/tls, or has OpenSSL /
    BoringSSL linked in statically."""
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return None
    path = f"/proc/{pid}/exe" if exe.endswith(" (deleted)") else _in_root(pid, exe)
    ident = _identity(path)
    if ident is None:
        return None
    go = _go_tls_functions(path, ident)
    if GO_TLS_WRITE in go and GO_TLS_READ in go:
        names = (GO_TLS_WRITE, GO_TLS_READ)
        version = go_version(path, ident)
        if version is None or version < (1, 17):
            # arguments in registers (the probes' assumption) came with Go 1.17 on amd64
            problem = "built with Go older than 1.18 (only Go 1.18+ binaries are traced)"
            return ProbeTarget("go", path, ident[:2], names, problem)
        return ProbeTarget("go", path, ident[:2], names)
    static = static_openssl_functions(path, ident, OPENSSL_FUNCTIONS)
    names = tuple(n for n in OPENSSL_FUNCTIONS if n in static)
    if "SSL_write" in names or "SSL_write_ex" in names:
        return ProbeTarget("openssl", path, ident[:2], names)
    return None


def process_targets(pid: int) -> list[ProbeTarget]:
    """Every file of `pid` that TLS capture attaches to (empty: nothing to trace yet)."""
    targets = openssl_targets(pid)
    exe = exe_target(pid)
    if exe is not None and exe.identity not in {t.identity for t in targets}:
        targets.append(exe)
    return targets


def all_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]
