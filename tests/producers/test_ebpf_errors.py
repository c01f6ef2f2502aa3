"""Each missing eBPF prerequisite gives its own one-line error, made real here: an
unprivileged user, root without BPF capabilities, a mount namespace without kernel
headers or without tracefs. The probe reports what works so capture can fall back."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

if os.geteuid() != 0:
    pytest.skip(
        "these tests drop privileges from root (CI runs them as root)", allow_module_level=True
    )

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import sys
from schemas.errors import WiretideError
try:
    if sys.argv[1] == "tls":
        from producers.tls import TlsCapture
        TlsCapture(pids=[int(a) for a in sys.argv[2:]] or None).start()
    elif sys.argv[1] == "filter":
        from producers.ebpf.ip_filter import IpFilter
        IpFilter().close()
    elif sys.argv[1] == "memlock":
        import resource
        from producers.ebpf.ip_filter import IpFilter
        IpFilter().close()
        soft, hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
        print(f"memlock={soft}")
    else:
        from producers.tls import probe_ebpf
        s = probe_ebpf()
        print(f"tls={s.tls} filter={s.socket_filter} privileged={s.privileged}")
        print("\n".join(s.problems))
        sys.exit(0)
except WiretideError as e:
    print(f"{type(e).__name__}: {e}")
    sys.exit(2)
print("started")
"""


def _run(prefix: list[str], *args: str) -> tuple[int, list[str]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [*prefix, sys.executable, "-c", SCRIPT, *args],
        capture_output=True,
        text=True,
        cwd="/",
        env=env,
        timeout=120,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, proc.stdout.splitlines()


NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
NO_BPF_CAPS = ["capsh", "--drop=cap_bpf,cap_sys_admin,cap_perfmon", "--", "-c", 'exec "$@"', "-"]


@pytest.mark.parametrize("what", ["tls", "filter"])
@pytest.mark.parametrize(
    ("wrapper", "error"),
    [
        (NOBODY, "NotRootError: eBPF capture needs root"),
        (NO_BPF_CAPS, "BpfPermissionError: the kernel refused to load"),
    ],
    ids=["unprivileged_user", "root_without_bpf_capabilities"],
)
def test_missing_privileges_are_one_line(wrapper: list[str], error: str, what: str) -> None:
    code, out = _run(wrapper, what)
    assert code == 2
    assert len(out) == 1
    assert out[0].startswith(error)


def test_no_kernel_headers() -> None:
    # a private mount namespace where /lib/modules is empty
    hide = ["unshare", "-m", "sh", "-c", 'mount -t tmpfs none /lib/modules && exec "$@"', "-"]
    code, out = _run(hide, "tls")
    assert code == 2
    assert out == [
        f"KernelHeadersMissingError: no kernel headers at /lib/modules/{os.uname().release}"
        "/build (BCC compiles against them): run producers/tls/setup.sh as root "
        "(installs linux-headers-amd64 and links them there)"
    ]


def test_no_tracefs_stops_tls_but_not_the_filter() -> None:
    hide = ["unshare", "-m", "sh", "-c", 'umount /sys/kernel/tracing && exec "$@"', "-"]
    code, out = _run(hide, "tls")
    assert code == 2
    assert out == [
        "TracefsMissingError: tracefs is not mounted at /sys/kernel/tracing: "
        "mount -t tracefs nodev /sys/kernel/tracing (or run producers/tls/setup.sh as root)"
    ]
    assert _run(hide, "filter") == (0, ["started"])
    code, out = _run(hide, "probe")
    assert out[0] == "tls=False filter=True privileged=True"
    assert out[1].startswith("tracefs is not mounted")


def test_probe_as_unprivileged_user_lists_the_reason() -> None:
    code, out = _run(NOBODY, "probe")
    assert code == 0
    assert out[0] == "tls=False filter=False privileged=False"
    assert out[1].startswith("eBPF capture needs root")


def test_probe_as_root_finds_everything() -> None:
    assert _run([], "probe") == (0, ["tls=True filter=True privileged=True", ""])


def test_unknown_pid() -> None:
    gone = subprocess.run(["sh", "-c", "echo $$"], capture_output=True, text=True).stdout
    code, out = _run([], "tls", gone.strip())
    assert code == 2
    assert out == [
        f"ProcessNotFoundError: no process with pid {gone.strip()}: give the pid of a "
        "running process"
    ]


def test_low_memlock_limit_is_raised() -> None:
    hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)[1]
    limit = f"--memlock=65536:{'unlimited' if hard == resource.RLIM_INFINITY else hard}"
    assert _run(["prlimit", limit], "memlock") == (0, [f"memlock={hard}", "started"])


def test_memlock_limit_that_cannot_be_raised() -> None:
    # Kernels since 5.11 charge BPF memory to the cgroup, not RLIMIT_MEMLOCK: capture
    # runs; older kernels report MemlockError instead.
    code, out = _run(["prlimit", "--memlock=65536:65536"], "memlock")
    if tuple(int(x) for x in os.uname().release.split(".")[:2]) >= (5, 11):
        assert (code, out) == (0, ["memlock=65536", "started"])
    else:
        assert code == 2 and out[0].startswith("MemlockError: RLIMIT_MEMLOCK is 64 KiB")
