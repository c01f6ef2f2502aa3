"""One error class per missing eBPF prerequisite; each message says what to do."""

from schemas.errors import WiretideError

SETUP_HINT = "run producers/tls/setup.sh as root"


class EbpfError(WiretideError):
    """eBPF capture cannot run here."""


class NotRootError(EbpfError):
    def __init__(self) -> None:
        super().__init__(
            "eBPF capture needs root (or CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN): "
            "run the agent as root or grant it those capabilities"
        )


class BccMissingError(EbpfError):
    def __init__(self, detail: str) -> None:
        super().__init__(
            f"BCC is not installed ({detail}): {SETUP_HINT} "
            "(apt-get install python3-bpfcc bpfcc-tools)"
        )


class KernelHeadersMissingError(EbpfError):
    def __init__(self, path: str) -> None:
        super().__init__(
            f"no kernel headers at {path} (BCC compiles against them): {SETUP_HINT} "
            "(installs linux-headers-amd64 and links them there)"
        )


class TracefsMissingError(EbpfError):
    def __init__(self, path: str) -> None:
        super().__init__(
            f"tracefs is not mounted at {path}: mount -t tracefs nodev {path} (or {SETUP_HINT})"
        )


class UprobesUnsupportedError(EbpfError):
    def __init__(self) -> None:
        super().__init__(
            "this kernel has no uprobe events (CONFIG_UPROBE_EVENTS): TLS capture cannot "
            "run here; capture with AF_PACKET instead (plaintext traffic only)"
        )


class BpfPermissionError(EbpfError):
    def __init__(self, what: str) -> None:
        super().__init__(
            f"the kernel refused to load {what} (EPERM): run as root with CAP_BPF/"
            "CAP_SYS_ADMIN, and check kernel.unprivileged_bpf_disabled or a seccomp/"
            "lockdown policy"
        )


class MemlockError(EbpfError):
    def __init__(self, limit_kib: int) -> None:
        super().__init__(
            f"RLIMIT_MEMLOCK is {limit_kib} KiB and could not be raised, too low for BPF "
            "maps on this kernel: run with `ulimit -l unlimited` (or LimitMEMLOCK=infinity)"
        )


class BpfLoadError(EbpfError):
    def __init__(self, what: str, detail: str) -> None:
        first = detail.strip().splitlines()[0] if detail.strip() else "no detail"
        super().__init__(f"could not load {what}: {first}")


class ProcessNotFoundError(EbpfError):
    def __init__(self, pid: int) -> None:
        super().__init__(f"no process with pid {pid}: give the pid of a running process")
