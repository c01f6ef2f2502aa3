"""`wiretide hub`: serve the API on one address over the data dir's store.

Kept free of heavy imports at module level: the CLI builds its parser on every run.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import sys
from collections.abc import Iterator, Sequence

from schemas.errors import WiretideError

DEFAULT_LISTEN = "127.0.0.1:8899"
# Room for a live filter of MAX_FILTER characters, percent-encoded (up to 12 bytes each).
_MAX_REQUEST_LINE = 128 * 1024


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    hub = sub.add_parser(
        "hub",
        help="serve the HTTP/WebSocket API over the stored calls",
        description="Serve stored calls (KFL queries, call detail) and a live tail of new "
        "calls. On loopback no token is needed; on any other address every /api request "
        "needs 'Authorization: Bearer <token>' ($WIRETIDE_HUB_TOKEN, else one is made "
        "up and printed).",
    )
    _arguments(hub)
    return hub


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--listen",
        default=DEFAULT_LISTEN,
        metavar="HOST:PORT",
        help=f"address to serve on (default {DEFAULT_LISTEN}; port 0 picks a free one)",
    )
    p.add_argument(
        "--data", metavar="DIR", help="data dir (default: $WIRETIDE_DATA or ~/.wiretide)"
    )
    p.add_argument(
        "--kafka",
        metavar="HOST:PORT",
        help="Kafka bootstrap for the live tail (default: $WIRETIDE_KAFKA or the local "
        "broker, if it runs)",
    )
    p.add_argument(
        "--clickhouse",
        metavar="DSN",
        help="chdb:///path or http(s)://host:8123 (default: chDB in the data dir)",
    )


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


def run_hub(args: argparse.Namespace) -> int:
    from pathlib import Path

    from schemas import config
    from wiretide.hub.auth import TOKEN_ENV, Access
    from wiretide.hub.live import LiveError

    host, port = parse_listen(args.listen)
    access, generated = Access.for_listen(host)
    data = config.data_dir(args.data)
    sock = bind(host, port)
    try:
        import uvicorn

        from sinks.clickhouse.connect import open_store
        from wiretide.hub.app import create_app
        from wiretide.hub.live import LiveTail
        from wiretide.hub.store import HubStore

        store = HubStore(open_store(config.store_dsn(data, args.clickhouse)))
    except BaseException:
        sock.close()
        raise

    if args.kafka:  # the export route reads the segments from the same Kafka
        os.environ["WIRETIDE_KAFKA"] = args.kafka

    def bootstrap() -> str:
        explicit = args.kafka or os.environ.get("WIRETIDE_KAFKA")
        if explicit:
            return explicit
        from wiretide.broker import local_broker

        broker = local_broker(Path(data))
        if broker.is_up():
            return broker.bootstrap
        raise LiveError(
            "live tail: no Kafka broker; start one (wiretide broker start) or run the hub "
            "with --kafka HOST:PORT"
        )

    app = create_app(store, access, LiveTail(bootstrap))
    server = _quiet_exit_server(uvicorn)(server_config(app))
    bound = sock.getsockname()
    shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
    if generated:
        print(f"wiretide hub: token (set {TOKEN_ENV} to choose it): {access.token}", flush=True)
    print(
        f"wiretide hub: listening on http://{shown}:{bound[1]} (store {store.store.where}"
        f"{'' if access.token is None else '; token required'})",
        flush=True,
    )
    # `query`, `map` and `export` on this data dir go through this hub while it owns it.
    from wiretide.hub.client import advertise, withdraw

    owns_data_dir = config.store_dsn(data, args.clickhouse) == f"chdb://{data / 'chdb'}"
    if owns_data_dir:
        local = "127.0.0.1" if bound[0] in ("0.0.0.0", "127.0.0.1") else shown
        advertise(data, f"http://{local}:{bound[1]}", access.token)
    try:
        server.run(sockets=[sock])
    finally:
        if owns_data_dir:
            withdraw(data)
        sock.close()
        store.close()
    return 0


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


def _quiet_exit_server(uvicorn):  # noqa: ANN001, ANN202 - the module, a Server subclass
    """uvicorn re-raises SIGINT/SIGTERM after its graceful stop (ending the process before
    the store is closed); this one just returns, and `wiretide hub` exits 0."""

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            wanted = (signal.SIGINT, signal.SIGTERM)
            before = {sig: signal.signal(sig, self.handle_exit) for sig in wanted}
            try:
                yield
            finally:
                for sig, handler in before.items():
                    signal.signal(sig, handler)

    return Server


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m wiretide.hub [options]`, the same as `wiretide hub [options]`."""
    parser = argparse.ArgumentParser(prog="wiretide hub", description="Serve the hub API.")
    _arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run_hub(args)
    except WiretideError as exc:
        print(f"wiretide: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
