"""ClickHouse storage for API calls: one client API for embedded chDB and a server.

store = open_store("chdb:///var/lib/wiretide", ttl_days=7)
CallWriter(store).write(calls)
read_calls(store, protocol="http", limit=100)
"""

from sinks.clickhouse.config import DEFAULT_TTL_DAYS, StoreConfig
from sinks.clickhouse.connect import Store, open_store
from sinks.clickhouse.reader import count_calls, read_calls
from sinks.clickhouse.writer import CallWriter

__all__ = [
    "DEFAULT_TTL_DAYS",
    "CallWriter",
    "Store",
    "StoreConfig",
    "count_calls",
    "open_store",
    "read_calls",
]
