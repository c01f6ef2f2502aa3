"""Which processes do TLS, which library of each is hooked (and its version), and the
exact reason when one cannot be: the TLS half of a node's coverage (schemas/coverage.py)."""

from __future__ import annotations

import os
import re

from producers.tls.elf import find_text, go_tls_functions, go_version_text
from producers.tls.targets import ProbeTarget, _identity
from schemas.coverage import TlsProcess

# OPENSSL_VERSION_TEXT, e.g. "OpenSSL 3.0.19 27 Jan 2026" (libcrypto, or a static binary)
_OPENSSL_VERSION = rb"OpenSSL (\d+\.\d+\.\d+[a-z]?) +\d{1,2} [A-Z][a-z]{2} \d{4}"
_GO_TLS_MARKER = rb"crypto/tls\.\(\*Conn\)\.Write"
_LIBSSL_MARKER = rb"ssl/statem/"  # libssl's source paths (error reports keep them)
_UNSUPPORTED = (  # a mapped library (regex on its path) -> library, why it is not traced
    (re.compile(r"/libjvm\.so$"), "Java", "unsupported library (Java's JSSE is not traced)"),
    (re.compile(r"/libgnutls\.so[^/]*$"), "GnuTLS", "unsupported library (GnuTLS is not traced)"),
    (re.compile(r"/libnss3\.so[^/]*$"), "NSS", "unsupported library (NSS is not traced)"),
)
STRIPPED_GO = (
    "stripped Go binary (no symbol table to find crypto/tls in: it was built with "
    "-ldflags=-s; build it without -s to capture its TLS)"
)
STATIC_OPENSSL = (
    "static OpenSSL without symbols (SSL_read/SSL_write cannot be found in a stripped "
    "executable; link OpenSSL dynamically or keep its symbols)"
)


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def _exe(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return ""


def _mapped(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/maps") as f:
            paths = {parts[5] for line in f if len(parts := line.split(maxsplit=5)) == 6}
    except OSError:
        return []
    return sorted(p.rstrip("\n") for p in paths if p.startswith("/"))


def _version_in(path: str) -> str:
    ident = _identity(path)
    if ident is None:
        return ""
    return find_text(path, ident, _OPENSSL_VERSION) or ""


def _openssl_version(pid: int, target: ProbeTarget) -> str:
    """libssl holds no version text; the libcrypto it goes with (or the binary) does."""
    found = _version_in(target.path)
    if found:
        return found
    for lib in _mapped(pid):
        if "/libcrypto" in lib:
            found = _version_in(f"/proc/{pid}/root{lib}")
            if found:
                return found
    return ""


def _library(target: ProbeTarget) -> str:
    if target.kind == "go":
        return "Go"
    return "BoringSSL" if "boringssl" in target.path.lower() else "OpenSSL"


def hooked(
    pid: int, targets: list[ProbeTarget], errors: dict[tuple[int, int], str]
) -> list[TlsProcess]:
    """A process with probe targets: hooked, or the target's problem / attach error
    (`errors` by file identity)."""
    comm, exe = _comm(pid), _exe(pid)
    out = []
    for t in targets:
        if t.kind == "go":
            ident = _identity(t.path)
            version = (go_version_text(t.path, ident) or "") if ident else ""
            version = version.removeprefix("go")
        else:
            version = _openssl_version(pid, t)
        why = t.problem or errors.get(t.identity, "")
        shown = t.path.removeprefix(f"/proc/{pid}/root")
        out.append(TlsProcess(pid, comm, _library(t), not why, version, shown, why, exe))
    return out


def not_hooked(pid: int) -> list[TlsProcess]:
    """A process with nothing to probe that still does (or may do) TLS, and why it is not
    traced: a stripped Go binary, a static OpenSSL without symbols, Java, GnuTLS, NSS."""
    exe = _exe(pid)
    if not exe:
        return []
    path = f"/proc/{pid}/exe" if exe.endswith(" (deleted)") else f"/proc/{pid}/root{exe}"
    ident = _identity(path)
    if ident is None:
        return []
    comm = _comm(pid)
    go = go_version_text(path, ident)
    if go is not None:
        if find_text(path, ident, _GO_TLS_MARKER) and not go_tls_functions(path, ident):
            return [
                TlsProcess(pid, comm, "Go", False, go.removeprefix("go"), exe, STRIPPED_GO, exe)
            ]
        return []
    version = find_text(path, ident, _OPENSSL_VERSION)
    if version and find_text(path, ident, _LIBSSL_MARKER):  # libcrypto alone is no TLS
        return [TlsProcess(pid, comm, "OpenSSL", False, version, exe, STATIC_OPENSSL, exe)]
    out = []
    for lib in _mapped(pid):
        for pattern, library, why in _UNSUPPORTED:
            if pattern.search(lib):
                out.append(TlsProcess(pid, comm, library, False, "", lib, why, exe))
    return out
