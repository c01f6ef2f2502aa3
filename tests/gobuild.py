"""The Go-built test peers (kube-apiserver, Jaeger, ...): `scripts/build-<name>.sh` is
instant when cached and waits on its lock while install.sh's background build runs (CI).
A cold build takes far longer than a test's timeout, which counts fixture set-up, so
pytest-timeout's alarm is paused meanwhile."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def build_go_peer(name: str, timeout_s: float = 3600) -> None:
    """Build (or wait for) scripts/build-<name>.sh; a failed build raises with its log."""
    left, _ = signal.getitimer(signal.ITIMER_REAL)
    signal.setitimer(signal.ITIMER_REAL, 0)
    try:
        proc = subprocess.run(
            ["bash", str(ROOT / "scripts" / f"build-{name}.sh")],
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
    finally:
        if left:
            signal.setitimer(signal.ITIMER_REAL, left)
    if proc.returncode != 0:
        raise RuntimeError(
            f"scripts/build-{name}.sh failed:\n{proc.stdout[-2000:]}{proc.stderr[-3000:]}"
        )
