"""Liveness for long-running processes without an HTTP port: each beats a file in its
data dir while its main loop turns, and `wiretide health COMPONENT` (a Kubernetes exec
probe) says whether the beat is recent."""

from __future__ import annotations

import os
import time
from pathlib import Path

_last: dict[str, float] = {}


def _path(component: str, data: Path) -> Path:
    return data / "health" / component


def beat(component: str, data: Path) -> None:
    """Record that `component` is alive (at most once a second; never raises)."""
    now = time.time()
    if now - _last.get(component, 0.0) < 1.0:
        return
    _last[component] = now
    path = _path(component, data)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}")
        tmp.write_text(f"{now:.3f}\n")
        tmp.replace(path)
    except OSError:
        pass


def check(component: str, max_age_s: float, data: Path) -> tuple[bool, str]:
    path = _path(component, data)
    try:
        age = time.time() - float(path.read_text())
    except (OSError, ValueError):
        return False, f"{component}: no heartbeat yet ({path})"
    if age > max_age_s:
        return False, f"{component}: last heartbeat {age:.0f}s ago (limit {max_age_s:.0f}s)"
    return True, f"{component}: alive ({age:.1f}s ago)"
