"""Enter another network namespace for a moment (this thread only), to create sockets
there: a socket keeps the namespace it was created in after the thread returns."""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterator
from contextlib import contextmanager

from schemas.errors import WiretideError

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


class NetnsError(WiretideError):
    """A network namespace that cannot be found or entered."""


def netns_path(name: str) -> str:
    """`/var/run/netns/<name>` (made by `ip netns add`), or a pid's: `pid:1234`,
    or any path to a namespace file."""
    if name.startswith("pid:") and name[4:].isdigit():
        return f"/proc/{name[4:]}/ns/net"
    if "/" in name:
        return name
    return f"/var/run/netns/{name}"


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


@contextmanager
def in_netns(name: str | None) -> Iterator[None]:
    """Run the body inside network namespace `name` (None: stay where we are)."""
    if name is None:
        yield
        return
    path = netns_path(name)
    try:
        target = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NetnsError(
            f"network namespace {name!r}: {path} does not exist; list them with ip netns list"
        ) from None
    except PermissionError:
        raise NetnsError(
            f"network namespace {name!r}: {path}: permission denied; run as root"
        ) from None
    try:
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            try:
                _setns(target)
            except OSError as exc:
                raise NetnsError(
                    f"network namespace {name!r}: cannot enter it ({exc.strerror}); "
                    "it takes root (CAP_SYS_ADMIN)"
                ) from None
            try:
                yield
            finally:
                _setns(home)
        finally:
            os.close(home)
    finally:
        os.close(target)
