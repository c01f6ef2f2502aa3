"""eBPF helpers shared by capture sources: prerequisite checks and the pod-IP socket filter."""

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
from producers.ebpf.support import EbpfSupport, load_bcc, probe_ebpf, require_ebpf

__all__ = [
    "BccMissingError",
    "BpfLoadError",
    "BpfPermissionError",
    "EbpfError",
    "EbpfSupport",
    "KernelHeadersMissingError",
    "MemlockError",
    "NotRootError",
    "TracefsMissingError",
    "UprobesUnsupportedError",
    "load_bcc",
    "probe_ebpf",
    "require_ebpf",
]
