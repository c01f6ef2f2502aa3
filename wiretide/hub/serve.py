"""Serving the hub API: the one way `wiretide hub`, `wiretide sink --serve` and the tap's
UI start it. A thread of the calling process serves it over an open store, advertised in
`<data>/hub.json` (wiretide.hub.client) while it runs.

Kept free of heavy imports at module level: the CLI imports it on every run.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

from schemas.config import Settings
from schemas.errors import WiretideError

# Room for a live filter of MAX_FILTER characters, percent-encoded (up to 12 bytes each).
_MAX_REQUEST_LINE = 128 * 1024


def parse_listen(text: str) -> tuple[str, int]:
    """`HOST:PORT`, `[V6]:PORT` → (host, port); WiretideError if malformed."""
    host, sep, port = text.rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]")
    if bracketed:
        host = host[1:-1]
    valid = sep and host and port.isdigit() and int(port) <= 65535
    if not valid or (":" in host and not bracketed):
        raise WiretideError(
            f"--listen {text!r}: expected HOST:PORT, e.g. 127.0.0.1:8899, 0.0.0.0:8899 "
            "or [::1]:8899"
        )
    return host, int(port)


def bind(host: str, port: int) -> socket.socket:
    """A listening socket, so a busy port is one line before anything else starts."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as ex:
        raise WiretideError(f"cannot listen on {host}:{port}: {ex.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as ex:
        sock.close()
        hint = "; stop what uses it or pick another with --listen" if port else ""
        raise WiretideError(
            f"cannot listen on {host}:{port}: {(ex.strerror or str(ex)).lower()}{hint}"
        ) from None
    sock.set_inheritable(True)
    return sock


def server_config(app: object):  # noqa: ANN201 - a uvicorn.Config
    """How the hub is served. Shutdown waits a few seconds for open sockets, not for
    ever: a live-tail client that never reads cannot take a close frame."""
    # The live filter is in the WebSocket's request line; websockets reads this (once,
    # when the server first imports it) and would leave a longer line unanswered.
    os.environ.setdefault("WEBSOCKETS_MAX_LINE_LENGTH", str(_MAX_REQUEST_LINE))
    import uvicorn

    return uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="on",
        ws="websockets-sansio",
        timeout_graceful_shutdown=5,
    )


class SharedStoreWriter:
    """A CallWriter taking turns with the hub's reads on one open embedded store (chDB
    is not thread-safe): each insert holds the same lock as the hub's queries."""

    def __init__(self, writer: object, lock: threading.Lock) -> None:
        self._writer, self._lock = writer, lock

    def write(self, calls: list, *, replay: bool = False) -> list:
        with self._lock:
            return self._writer.write(calls, replay=replay)


class ServedHub:
    """The hub API served from a thread of this process over an open store."""

    def __init__(
        self, server: object, thread: threading.Thread, sock: socket.socket, url: str
    ) -> None:
        self._server, self._thread, self._sock, self.url = server, thread, sock, url

    @classmethod
    def start(
        cls,
        store: object,
        listen: str,
        settings: Settings,
        bootstrap: Callable[[], str],
        *,
        sock: socket.socket | None = None,
        access: object = None,
        advertise: bool = True,
        ready_timeout: float = 60.0,
    ) -> ServedHub:
        """Serve `store` (a HubStore) with `settings` (the data dir it advertises in, what
        routes read) on `listen` (HOST:PORT, port 0 picks one; or on
        `sock`, bound to it already) to whom `access` (wiretide.hub.auth.Access; default:
        the address's) lets in; returns once it answers. A busy port or bad address raises
        WiretideError (one line)."""
        import uvicorn

        from wiretide.hub import client
        from wiretide.hub.app import create_app
        from wiretide.hub.auth import Access
        from wiretide.hub.live import LiveTail

        host, port = parse_listen(listen)
        access = access or Access.for_listen(host, settings.hub_token)[0]
        sock = sock or bind(host, port)
        app = create_app(store, access, LiveTail(settings, bootstrap))
        server = uvicorn.Server(server_config(app))
        # uvicorn leaves signals alone outside the main thread: the caller's handlers stay.
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="wiretide-hub", daemon=True
        )
        thread.start()
        deadline = time.monotonic() + ready_timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                server.should_exit = True
                sock.close()
                raise WiretideError(f"the hub did not start on {listen}")
            time.sleep(0.02)
        bound_port = sock.getsockname()[1]
        # A wildcard address is reached on loopback from this machine.
        local = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
        shown = f"[{local}]" if ":" in local else local
        url = f"http://{shown}:{bound_port}"
        if advertise:
            client.advertise(settings.data, url, access.token)
        return cls(server, thread, sock, url)

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def stop(self, data: Path, timeout: float = 30.0) -> None:
        """Withdraw the advert first (new callers open the store once we are gone)."""
        from wiretide.hub.client import withdraw

        withdraw(data)
        self._server.should_exit = True
        self._thread.join(timeout)
        self._sock.close()

    def serve_until_stopped(self, data: Path) -> None:
        """Block until SIGINT or SIGTERM, then stop serving."""
        stopping = threading.Event()
        before = {
            sig: signal.signal(sig, lambda *_: stopping.set())
            for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            while not stopping.wait(0.5) and self._thread.is_alive():
                pass
        finally:
            self.stop(data)
            for sig, handler in before.items():
                signal.signal(sig, handler)
