"""Find out whether eBPF works here, and load BCC and BPF programs with one-line errors.

Debian's BCC (python3-bpfcc) is pure Python over ctypes and libbcc.so, so it imports into
any CPython 3 — our venv included — straight from Debian's dist-packages directory.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import resource
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from producers.ebpf.errors import (
    BccMissingError,
    BpfLoadError,
    BpfPermissionError,
    EbpfError,
    KernelHeadersMissingError,
    MemlockError,
    NotRootError,
    TracefsMissingError,
    UprobesUnsupportedError,
)

DEBIAN_BCC = "/usr/lib/python3/dist-packages/bcc/__init__.py"
TRACEFS = "/sys/kernel/tracing"
BTF = "/sys/kernel/btf/vmlinux"
_CAP_SYS_ADMIN, _CAP_PERFMON, _CAP_BPF = 21, 38, 39
_MEMLOCK_WANT = 256 << 20  # enough for our maps and ring buffer on pre-5.11 kernels


def headers_dir() -> str:
    return f"/lib/modules/{os.uname().release}/build"


def load_bcc() -> ModuleType:
    """The `bcc` module: the importable one, else Debian's copy loaded by path."""
    if "bcc" in sys.modules:
        return sys.modules["bcc"]
    try:
        import bcc  # type: ignore[import-not-found]

        return bcc
    except ImportError:
        pass
    except OSError as e:  # libbcc.so missing under an importable package
        raise BccMissingError(str(e)) from None
    if not os.path.exists(DEBIAN_BCC):
        raise BccMissingError(f"no module bcc and no {DEBIAN_BCC}")
    spec = importlib.util.spec_from_file_location(
        "bcc", DEBIAN_BCC, submodule_search_locations=[os.path.dirname(DEBIAN_BCC)]
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bcc"] = module
    try:
        spec.loader.exec_module(module)
    except (ImportError, OSError) as e:
        del sys.modules["bcc"]
        raise BccMissingError(str(e)) from None
    return module


def _effective_caps() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return int(line.split()[1], 16)
    except OSError:
        pass
    return 0


def has_bpf_privilege() -> bool:
    if os.geteuid() == 0:
        return True
    caps = _effective_caps()
    if caps >> _CAP_SYS_ADMIN & 1:
        return True
    return bool(caps >> _CAP_BPF & 1 and caps >> _CAP_PERFMON & 1)


def has_kernel_headers() -> bool:
    # BCC also accepts the in-kernel headers of CONFIG_IKHEADERS (kheaders module).
    build = headers_dir()
    return os.path.isdir(os.path.join(build, "include")) or os.path.exists(
        "/sys/kernel/kheaders.tar.xz"
    )


def tracefs_root() -> str | None:
    for root in (TRACEFS, "/sys/kernel/debug/tracing"):
        if os.path.isdir(os.path.join(root, "events")):
            return root
    return None


def raise_memlock() -> None:
    """Lift RLIMIT_MEMLOCK (only kernels before 5.11 charge BPF maps to it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    if soft == resource.RLIM_INFINITY or soft >= _MEMLOCK_WANT:
        return
    for limit in ((resource.RLIM_INFINITY, resource.RLIM_INFINITY), (hard, hard)):
        try:
            resource.setrlimit(resource.RLIMIT_MEMLOCK, limit)
            return
        except (ValueError, OSError):
            continue
    if _kernel_version() < (5, 11):
        raise MemlockError(soft // 1024)


def _kernel_version() -> tuple[int, int]:
    parts = os.uname().release.split(".")
    try:
        return int(parts[0]), int("".join(c for c in parts[1] if c.isdigit()) or 0)
    except (IndexError, ValueError):
        return (0, 0)


def require_ebpf(*, tracing: bool) -> ModuleType:
    """Check what BCC needs (and, with `tracing`, what uprobes/tracepoints need); raise the
    first missing piece as a one-line error. Returns the bcc module."""
    if not has_bpf_privilege():
        raise NotRootError()
    bcc = load_bcc()
    if not has_kernel_headers():
        raise KernelHeadersMissingError(headers_dir())
    if tracing:
        root = tracefs_root()
        if root is None:
            raise TracefsMissingError(TRACEFS)
        if not os.path.exists(os.path.join(root, "uprobe_events")):
            raise UprobesUnsupportedError()
    raise_memlock()
    return bcc


@contextlib.contextmanager
def _stderr_captured() -> Iterator[list[str]]:
    """Collect what libbcc/clang print on fd 2 (compile errors) instead of showing it."""
    lines: list[str] = []
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(tmp.fileno(), 2)
        try:
            yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            lines.extend(tmp.read().decode(errors="replace").splitlines())


def _classify(what: str, err: BaseException, log: list[str]) -> EbpfError:
    text = "\n".join([*log, str(err)])
    if "Operation not permitted" in text or getattr(err, "errno", None) == 1:
        return BpfPermissionError(what)
    if "kernel headers" in text or "kconfig.h" in text:
        return KernelHeadersMissingError(headers_dir())
    errors = [ln for ln in log if "error:" in ln] or [ln for ln in log if ln.strip()]
    return BpfLoadError(what, errors[0] if errors else str(err))


def compile_bpf(what: str, text: str, cflags: list[str] | None = None) -> Any:
    """`bcc.BPF(text=...)` with compile and load failures turned into one-line errors."""
    bcc = load_bcc()
    with _stderr_captured() as log:
        try:
            return bcc.BPF(text=text.encode(), cflags=cflags or [])
        except Exception as e:  # bcc raises bare Exception on compile failures
            err: BaseException = e
    raise _classify(what, err, log)


def load_func(bpf: Any, what: str, name: str, prog_type: int) -> Any:
    with _stderr_captured() as log:
        try:
            return bpf.load_func(name.encode(), prog_type)
        except Exception as e:
            err: BaseException = e
    raise _classify(what, err, log)


@dataclass(frozen=True)
class EbpfSupport:
    """What works on this host; `problems` holds the one-line reason for each gap."""

    privileged: bool
    bcc: bool
    kernel_headers: bool
    tracefs: bool
    uprobes: bool
    kprobes: bool
    btf: bool
    bpf_load: bool  # a socket filter program compiled and loaded
    problems: tuple[str, ...] = field(default=())

    @property
    def socket_filter(self) -> bool:
        return self.bpf_load

    @property
    def tls(self) -> bool:
        return self.bpf_load and self.tracefs and self.uprobes


_PROBE_PROGRAM = "int keep_all(struct __sk_buff *skb) { return -1; }"


def probe_ebpf() -> EbpfSupport:
    """Try each prerequisite (and load a trivial socket filter); never raises."""
    problems: list[str] = []
    privileged = has_bpf_privilege()
    if not privileged:
        problems.append(str(NotRootError()))
    try:
        load_bcc()
        bcc_ok = True
    except EbpfError as e:
        bcc_ok = False
        problems.append(str(e))
    headers = has_kernel_headers()
    if not headers:
        problems.append(str(KernelHeadersMissingError(headers_dir())))
    root = tracefs_root()
    if root is None:
        problems.append(str(TracefsMissingError(TRACEFS)))
    uprobes = root is not None and os.path.exists(os.path.join(root, "uprobe_events"))
    if root is not None and not uprobes:
        problems.append(str(UprobesUnsupportedError()))
    kprobes = root is not None and os.path.exists(os.path.join(root, "kprobe_events"))
    loaded = False
    if privileged and bcc_ok and headers:
        try:
            raise_memlock()
            bpf = compile_bpf("the probe socket filter", _PROBE_PROGRAM)
            load_func(bpf, "the probe socket filter", "keep_all", load_bcc().BPF.SOCKET_FILTER)
            bpf.cleanup()
            loaded = True
        except EbpfError as e:
            problems.append(str(e))
    return EbpfSupport(
        privileged=privileged,
        bcc=bcc_ok,
        kernel_headers=headers,
        tracefs=root is not None,
        uprobes=uprobes,
        kprobes=kprobes,
        btf=os.path.exists(BTF),
        bpf_load=loaded,
        problems=tuple(problems),
    )
