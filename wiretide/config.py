"""Settings shared by every process: topic names, data dir, DSN, from flags or env."""

from __future__ import annotations

import os
from pathlib import Path

SEGMENTS_TOPIC = "wiretide.segments"
CALLS_TOPIC = "wiretide.calls"
EOF_HEADER = "wiretide-eof"  # marks the end of a replayed capture on a segments partition
DLQ_SUFFIX = ".dlq"
STREAMS_GROUP = "wiretide-streams"
SINK_GROUP = "wiretide-sink"


def data_dir(explicit: str | os.PathLike | None = None) -> Path:
    raw = explicit or os.environ.get("WIRETIDE_DATA") or "~/.wiretide"
    return Path(raw).expanduser().resolve()


def store_dsn(data: Path, explicit: str | None = None) -> str:
    """`--clickhouse`, else WIRETIDE_CLICKHOUSE, else embedded chDB inside the data dir."""
    return explicit or os.environ.get("WIRETIDE_CLICKHOUSE") or f"chdb://{data / 'chdb'}"


def partitions() -> int:
    return int(os.environ.get("WIRETIDE_PARTITIONS", "4"))
