"""The embedded chDB data dir: creating it and finding out who owns it.

chDB runs the ClickHouse server in-process. On start it takes an exclusive `flock` on
`<dir>/status` and writes `PID: <pid>` into it; a second process opening the same dir
fails, and chDB's own error only says "Error initializing EmbeddedServer" (after
printing the real reason to stderr). So the dir is probed here first, which keeps the
error to one line that names the dir and the process that holds it.

The lock dies with its process: a dir left behind by a killed process opens normally.
"""

from __future__ import annotations

import fcntl
import os
import re
from pathlib import Path

from sinks.errors import SinkError, one_line

_PID = re.compile(rb"PID:\s*(\d+)")


def prepare(path: str) -> Path:
    """Create the data dir (and parents) if needed; a SinkError if that is not possible."""
    directory = Path(os.path.realpath(path))
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as ex:
        why = (
            "a part of that path is a file"
            if isinstance(ex, FileExistsError | NotADirectoryError)
            else (ex.strerror or one_line(ex)).lower()
        )
        raise SinkError(f"cannot create chDB data dir {directory}: {why}") from ex
    if not os.access(directory, os.R_OK | os.W_OK | os.X_OK):
        raise SinkError(f"chDB data dir {directory} is not writable by this user")
    return directory


def require_store(dsn: str) -> None:
    """For readers: an embedded DSN must name a dir something was stored in. Opening a
    missing one would create an empty store and hide a mistyped --data."""
    from urllib.parse import urlparse

    parsed = urlparse(dsn)
    if parsed.scheme != "chdb" or not parsed.path.startswith("/"):
        return  # a server, or a malformed DSN that open_store reports
    directory = Path(os.path.realpath(parsed.path))
    try:
        stored = directory.is_dir() and any(directory.iterdir())
    except OSError as ex:
        raise SinkError(f"cannot read the store in {directory}: {one_line(ex)}") from ex
    if not stored:
        raise SinkError(
            f"no store in {directory}: nothing was stored there; check --data "
            "(or run wiretide tap first)"
        )


def foreign_owner(directory: Path) -> int | None:
    """The PID of another process holding `directory`, 0 if it holds it but the PID is
    unknown, None if no other process does (free, or held by this very process)."""
    status = directory / "status"
    try:
        fd = os.open(status, os.O_RDONLY)
    except FileNotFoundError:
        return None
    except OSError:
        return None  # let chDB itself report what is wrong
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pass
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        match = _PID.search(os.pread(fd, 256, 0))
    finally:
        os.close(fd)
    pid = int(match.group(1)) if match else 0
    return None if pid == os.getpid() else pid


def busy_error(directory: Path, pid: int) -> SinkError:
    holder = f"pid {pid}" if pid else "another process"
    return SinkError(
        f"chDB data dir {directory} is in use by another wiretide process ({holder}); "
        "stop that process or point this one at another dir"
    )
