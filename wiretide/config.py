"""Settings shared by every process: topic names, data dir, DSN, from flags or env."""

from __future__ import annotations

import os
from pathlib import Path

# A prefix keeps several pipelines apart on one broker (tests, tenants).
PREFIX = os.environ.get("WIRETIDE_PREFIX", "")
SEGMENTS_TOPIC = PREFIX + "wiretide.segments"
CALLS_TOPIC = PREFIX + "wiretide.calls"
ENDPOINTS_TOPIC = PREFIX + "wiretide.endpoints"  # compacted: IP -> Endpoint
EOF_HEADER = "wiretide-eof"  # marks the end of a replayed capture on a segments partition
DLQ_SUFFIX = ".dlq"
STREAMS_GROUP = PREFIX + "wiretide-streams"
SINK_GROUP = PREFIX + "wiretide-sink"


def data_dir(explicit: str | os.PathLike | None = None) -> Path:
    raw = explicit or os.environ.get("WIRETIDE_DATA") or "~/.wiretide"
    return Path(raw).expanduser().resolve()


def store_dsn(data: Path, explicit: str | None = None) -> str:
    """`--clickhouse`, else WIRETIDE_CLICKHOUSE, else embedded chDB inside the data dir."""
    return explicit or os.environ.get("WIRETIDE_CLICKHOUSE") or f"chdb://{data / 'chdb'}"


def partitions() -> int:
    return int(os.environ.get("WIRETIDE_PARTITIONS", "4"))
