"""Reaching the process that owns a data dir.

Embedded chDB lets one process open a data dir. The owner that serves the hub API
(`wiretide sink --serve`, started by `wiretide tap`) says so in `<data>/hub.json`:
its pid, URL and token (mode 0600, removed when it stops). `wiretide query`, `map` and
`export` look there first: with a live owner they call its API, else they open the
store themselves.

    hub = find_hub(data)            # None: no live owner, open the store directly
    if hub is not None:
        for line in hub.lines("/api/export.jsonl", {"q": "http"}): ...
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from schemas.config import Settings
from schemas.errors import WiretideError

HUB_FILE = "hub.json"
_TIMEOUT_S = 600.0  # an export reads Kafka; a query may scan a lot


class HubCallError(WiretideError):
    """The owner's API answered with an error or did not answer."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, belongs to someone else
    return True


def advertise(data: Path, url: str | None, token: str | None, error: str | None = None) -> Path:
    """Write `<data>/hub.json` for this process (atomically, readable by its owner only):
    where its hub answers, or (`error`) why it serves none."""
    path = data / HUB_FILE
    tmp = path.with_name(f".{HUB_FILE}.{os.getpid()}")
    info = {"pid": os.getpid(), "url": url, "token": token}
    body = json.dumps(info if error is None else {"pid": os.getpid(), "error": error})
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(body)
    os.replace(tmp, path)
    return path


def withdraw(data: Path) -> None:
    """Remove `<data>/hub.json` if this process wrote it."""
    path = data / HUB_FILE
    if _read(path).get("pid") == os.getpid():
        path.unlink(missing_ok=True)


def clear_stale(data: Path) -> None:
    """Remove a hub.json left by a process that is gone (killed before it could)."""
    path = data / HUB_FILE
    pid = _read(path).get("pid")
    if isinstance(pid, int) and not _alive(pid):
        path.unlink(missing_ok=True)


def advert(data: Path) -> dict[str, Any]:
    """What `<data>/hub.json` says, as is ({} if nothing)."""
    return _read(data / HUB_FILE)


def _read(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def find_hub(data: Path) -> HubClient | None:
    """A client for the live owner advertised in `data`, or None."""
    info = _read(data / HUB_FILE)
    pid, url = info.get("pid"), info.get("url")
    if not isinstance(pid, int) or not isinstance(url, str) or pid == os.getpid():
        return None
    if not _alive(pid):
        return None
    token = info.get("token")
    return HubClient(url.rstrip("/"), token if isinstance(token, str) else None, pid)


def find_owner(settings: Settings) -> HubClient | None:
    """The live owner's API, when the store to read is the data dir's own embedded one
    (a ClickHouse server, or chDB elsewhere, is opened directly)."""
    if settings.store_dsn != settings.own_store_dsn:
        return None
    return find_hub(settings.data)


@dataclass(frozen=True, slots=True)
class HubClient:
    url: str
    token: str | None
    pid: int

    def open(self, path: str, params: Mapping[str, object] | None = None) -> Any:
        """GET `path`; the open response (a file-like object with `.headers`)."""
        query = {k: str(v) for k, v in (params or {}).items() if v is not None}
        target = self.url + path + ("?" + urllib.parse.urlencode(query) if query else "")
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        request = urllib.request.Request(target, headers=headers)
        try:
            return urllib.request.urlopen(request, timeout=_TIMEOUT_S)  # noqa: S310 - our URL
        except urllib.error.HTTPError as ex:
            raise HubCallError(_error_text(ex)) from None
        except (urllib.error.URLError, OSError) as ex:
            reason = getattr(ex, "reason", ex)
            raise HubCallError(
                f"the data dir's owner (pid {self.pid}) does not answer at {self.url}: "
                f"{reason}; retry, or stop it and run again"
            ) from None

    def get_json(self, path: str, params: Mapping[str, object] | None = None) -> Any:
        with self.open(path, params) as response:
            return json.loads(response.read())

    def lines(self, path: str, params: Mapping[str, object] | None = None) -> Iterator[str]:
        """The response body line by line (JSON lines), without line ends."""
        with self.open(path, params) as response:
            for raw in response:
                line = raw.decode("utf-8").rstrip("\n")
                if line:
                    yield line


def _error_text(ex: urllib.error.HTTPError) -> str:
    """The hub's one-line `error` (a KFL error's starts with its position), else the status."""
    try:
        return str(json.loads(ex.read())["error"])
    except (ValueError, KeyError, TypeError, OSError):
        return f"the hub answered {ex.code} {ex.reason}"
