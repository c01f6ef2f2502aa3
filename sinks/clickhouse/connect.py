"""Opening a store: DSN → clickhouse-connect client → migrated schema with the TTL applied.

`chdb:///abs/dir` gives the embedded engine (in-process chDB; one process owns a dir,
and a process can host only one dir at a time); `http(s)://[user:pass@]host[:port][/db]`
gives a ClickHouse server. Everything after opening goes through the same
clickhouse-connect client API, so the writer and reader do not know which one they use.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import ParseResult, urlparse

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import OperationalError

from sinks.clickhouse import datadir
from sinks.clickhouse.config import DEFAULT_TTL_DAYS, StoreConfig
from sinks.clickhouse.ddl import apply_ttl, migrate
from sinks.errors import SinkError, one_line

_DSN_HELP = "expected chdb:///absolute/dir or http(s)://host[:port][/database]"
_OTHER_PATH = re.compile(r"already initialized with path '([^']*)'")
_ERRNO = re.compile(r"\[Errno -?\d+\] ([^\"')]+)")


@dataclass(eq=False)
class Store:
    """An open store. Close it (or use `with`) to release an embedded data dir."""

    client: Client
    where: str  # the data dir, or scheme://host:port without credentials
    config: StoreConfig = field(default_factory=StoreConfig)
    embedded: bool = False
    _readers: list[Client] = field(default_factory=list, init=False, repr=False)

    def read_client(self) -> Client:
        """A client for reads beside the writes: for an embedded store, a second chDB
        connection to the same data dir (chDB runs its queries beside an insert on the
        first, where one connection takes one query at a time); for a server, `client`.
        Closed with the store."""
        if not self.embedded:
            return self.client
        if not self._readers:
            try:
                reader = clickhouse_connect.get_client(interface="chdb", path=self.where)
            except Exception as ex:
                raise SinkError(f"cannot open chDB data dir {self.where}: {one_line(ex)}") from ex
            self._readers.append(reader)
        return self._readers[0]

    def close(self) -> None:
        for reader in self._readers:
            reader.close()
        self._readers.clear()
        self.client.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_store(dsn: str, *, ttl_days: int | None = DEFAULT_TTL_DAYS, cluster: str = "") -> Store:
    """Connect, run pending migrations and make the retention `ttl_days` (0: forever;
    None: leave it as the writer set it - what readers pass).
    `cluster` (Settings.clickhouse_cluster) makes the tables ON CLUSTER."""
    config = StoreConfig(ttl_days=ttl_days, cluster=cluster)
    _without_pandas()
    parsed = urlparse(dsn or "")
    if parsed.scheme == "chdb":
        store = _open_embedded(dsn, parsed, config)
    elif parsed.scheme in ("http", "https"):
        store = _open_server(dsn, parsed.scheme, config)
    else:
        raise SinkError(f"bad store DSN {_safe(dsn)!r}: {_DSN_HELP}")
    try:
        migrate(store.client, config.cluster)
        if config.ttl_days is not None:
            apply_ttl(store.client, config.ttl_days, config.cluster)
    except Exception as ex:
        store.close()
        raise SinkError(f"cannot prepare tables in {store.where}: {one_line(ex)}") from ex
    return store


def _without_pandas() -> None:
    """Tell clickhouse-connect there is no pandas: its first insert of rows (a migration's)
    imports pandas only to ask whether they are a DataFrame, and ours never are; that
    import costs a writer ~45 MB of RSS and ~0.6 s of CPU. (Its state without pandas.)"""
    from clickhouse_connect.driver import options

    if "pd" not in vars(options):
        options.pd = None
        options.pd_time_test = None


def _open_embedded(dsn: str, parsed: ParseResult, config: StoreConfig) -> Store:
    path = parsed.path
    if parsed.netloc or not path.startswith("/") or path == "/":
        raise SinkError(f"bad store DSN {dsn!r}: {_DSN_HELP} (note the three slashes)")
    if parsed.query or parsed.fragment:
        raise SinkError(f"bad store DSN {dsn!r}: a chdb DSN takes no options")
    directory = datadir.prepare(path)
    pid = datadir.foreign_owner(directory)
    if pid is not None:
        raise datadir.busy_error(directory, pid)
    try:
        client = clickhouse_connect.get_client(interface="chdb", path=str(directory))
    except Exception as ex:
        raise _embedded_error(directory, ex) from ex
    return Store(client=client, where=str(directory), config=config, embedded=True)


def _embedded_error(directory: Path, ex: Exception) -> SinkError:
    other = _OTHER_PATH.search(str(ex))
    if other:
        return SinkError(
            f"cannot open chDB data dir {directory}: this process already has {other.group(1)} "
            "open and chDB hosts one data dir per process; close that store first"
        )
    pid = datadir.foreign_owner(directory)  # lost a race with another process?
    if pid is not None:
        return datadir.busy_error(directory, pid)
    return SinkError(f"cannot open chDB data dir {directory}: {one_line(ex)}")


def _open_server(dsn: str, scheme: str, config: StoreConfig) -> Store:
    parsed = urlparse(dsn)
    try:
        port = parsed.port
    except ValueError as ex:
        raise SinkError(f"bad store DSN {_safe(dsn)!r}: {one_line(ex)}") from ex
    if not parsed.hostname:
        raise SinkError(f"bad store DSN {_safe(dsn)!r}: {_DSN_HELP}")
    where = f"{scheme}://{parsed.hostname}:{port or (8443 if scheme == 'https' else 8123)}"
    try:
        # clickhouse-connect takes TLS from `interface`, not from the DSN scheme.
        client = clickhouse_connect.get_client(dsn=dsn, interface=scheme, connect_timeout=5)
    except OperationalError as ex:  # no answer: refused, unresolvable, timed out
        raise SinkError(
            f"cannot reach ClickHouse at {where}: {_transport_reason(ex)}; is the server running?"
        ) from ex
    except Exception as ex:  # it answered no: credentials, unknown database, ...
        raise SinkError(f"ClickHouse at {where} refused the connection: {one_line(ex)}") from ex
    return Store(client=client, where=where, config=config, embedded=False)


def _safe(dsn: str) -> str:
    """The DSN with any password masked, for error messages."""
    return re.sub(r"(//[^:/@]*:)[^@/]*@", r"\1***@", dsn or "")


def _transport_reason(ex: Exception) -> str:
    text = str(ex)
    if "NameResolutionError" in text or "Failed to resolve" in text:
        return "host name not found"
    if "timed out" in text.lower():
        return "connection timed out"
    errno = _ERRNO.search(text)
    return errno.group(1).strip().lower() if errno else one_line(ex)
