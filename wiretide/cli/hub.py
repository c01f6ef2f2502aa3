"""`wiretide hub`: serve the API on one address over the data dir's store."""

from __future__ import annotations

import argparse

from schemas.config import Settings
from wiretide.hub.serve import ServedHub, bind, parse_listen

NAME = "hub"
DEFAULT_LISTEN = "127.0.0.1:8899"
HELP = "serve the HTTP/WebSocket API over the stored calls"
DESCRIPTION = (
    "Serve stored calls (KFL queries, call detail) and a live tail of new "
    "calls. On loopback no token is needed; on any other address every /api request "
    "needs 'Authorization: Bearer <token>' ($WIRETIDE_HUB_TOKEN, else one is made "
    "up and printed)."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
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


def run(args: argparse.Namespace, settings: Settings) -> int:
    from wiretide.hub.auth import TOKEN_ENV, Access

    host, port = parse_listen(args.listen)
    access, generated = Access.for_listen(host, settings.hub_token)
    sock = bind(host, port)
    try:
        # Imported here: the store loads chDB, the app FastAPI (most of a second).
        from sinks.clickhouse.connect import open_store
        from wiretide.hub.store import HubStore

        store = HubStore(open_store(settings.store_dsn, cluster=settings.clickhouse_cluster))
    except BaseException:
        sock.close()
        raise
    # `query`, `map` and `export` on this data dir go through this hub while it owns it.
    owns_data_dir = settings.store_dsn == settings.own_store_dsn
    try:
        hub = ServedHub.start(
            store, args.listen, settings, _live_bootstrap(settings),
            sock=sock, access=access, advertise=owns_data_dir,
        )  # fmt: skip
        bound = sock.getsockname()
        shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
        if generated:
            print(f"wiretide hub: token (set {TOKEN_ENV} to choose it): {access.token}", flush=True)
        print(
            f"wiretide hub: listening on http://{shown}:{bound[1]} (store {store.store.where}"
            f"{'' if access.token is None else '; token required'})",
            flush=True,
        )
        hub.serve_until_stopped(settings.data)
    finally:
        sock.close()
        store.close()
    return 0


def _live_bootstrap(settings: Settings):  # noqa: ANN202 - () -> str
    """Where the live tail reads, asked when a client opens one: --kafka, $WIRETIDE_KAFKA,
    else the local broker if it runs."""

    def bootstrap() -> str:
        from wiretide.broker import local_broker
        from wiretide.hub.live import LiveError

        if settings.kafka:
            return settings.kafka
        broker = local_broker(settings)
        if broker.is_up():
            return broker.bootstrap
        raise LiveError(
            "live tail: no Kafka broker; start one (wiretide broker start) or run the hub "
            "with --kafka HOST:PORT"
        )

    return bootstrap
