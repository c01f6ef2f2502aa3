"""Storage settings that come from Wiretide's configuration."""

from __future__ import annotations

from dataclasses import dataclass

from sinks.errors import SinkError

DEFAULT_TTL_DAYS = 7


@dataclass(frozen=True, slots=True)
class StoreConfig:
    """`ttl_days`: how long a stored call is kept after it was ingested; 0 keeps calls forever."""

    ttl_days: int | None = DEFAULT_TTL_DAYS  # None: leave the table's TTL as it is
    cluster: str = ""  # a ClickHouse cluster name: tables ON CLUSTER (see ddl.py)

    def __post_init__(self) -> None:
        if self.ttl_days is None:
            return
        if isinstance(self.ttl_days, bool) or not isinstance(self.ttl_days, int):
            raise SinkError(f"ttl_days must be a whole number of days, not {self.ttl_days!r}")
        if self.ttl_days < 0:
            raise SinkError(f"ttl_days must be 0 (keep forever) or more, not {self.ttl_days}")
