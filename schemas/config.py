"""Settings shared by every process: topic names, data dir, DSN, from flags or env."""

from __future__ import annotations

import os
from pathlib import Path

# A prefix keeps several pipelines apart on one broker (tests, tenants).
PREFIX = os.environ.get("WIRETIDE_PREFIX", "")
SEGMENTS_TOPIC = PREFIX + "wiretide.segments"
CALLS_TOPIC = PREFIX + "wiretide.calls"
ENDPOINTS_TOPIC = PREFIX + "wiretide.endpoints"  # compacted: IP -> Endpoint
VIOLATIONS_TOPIC = PREFIX + "wiretide.violations"  # keyed by rule name: Violation
EOF_HEADER = "wiretide-eof"  # marks the end of a replayed capture on a segments partition
DLQ_SUFFIX = ".dlq"
STREAMS_GROUP = PREFIX + "wiretide-streams"
SINK_GROUP = PREFIX + "wiretide-sink"


def data_dir(explicit: str | os.PathLike | None = None) -> Path:
    raw = explicit or os.environ.get("WIRETIDE_DATA") or "~/.wiretide"
    return Path(raw).expanduser().resolve()


def writable_data_dir(explicit: str | os.PathLike | None = None) -> Path:
    """The data dir, created if needed and checked by writing into it (root ignores
    permissions, a read-only mount does not); one line saying why if it cannot be used."""
    import tempfile

    from schemas.errors import WiretideError

    path = data_dir(explicit)
    try:
        if path.exists() and not path.is_dir():
            raise WiretideError(f"data dir {path} is a file, not a directory; pass --data DIR")
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as ex:
        if isinstance(ex, (FileExistsError, NotADirectoryError)):
            why = "a part of that path is a file"
        else:
            why = (ex.strerror or str(ex)).lower()
        raise WiretideError(
            f"cannot use data dir {path}: {why}; pass --data DIR of a directory you can write"
        ) from None
    return path


def store_dsn(data: Path, explicit: str | None = None) -> str:
    """`--clickhouse`, else WIRETIDE_CLICKHOUSE, else embedded chDB inside the data dir."""
    return explicit or os.environ.get("WIRETIDE_CLICKHOUSE") or f"chdb://{data / 'chdb'}"


def partitions() -> int:
    from schemas.errors import WiretideError

    raw = os.environ.get("WIRETIDE_PARTITIONS", "").strip() or "4"
    if not raw.isdigit() or int(raw) < 1:
        raise WiretideError(
            f"WIRETIDE_PARTITIONS must be a whole number of at least 1, not {raw!r}"
        )
    return int(raw)


def kafka_security() -> dict[str, str]:
    """librdkafka settings for an existing Kafka with TLS and/or SASL, from the environment
    (WIRETIDE_KAFKA_SECURITY_PROTOCOL: PLAINTEXT | SSL | SASL_PLAINTEXT | SASL_SSL;
    WIRETIDE_KAFKA_SASL_MECHANISM, _USERNAME, _PASSWORD; WIRETIDE_KAFKA_CA: a CA file)."""
    env = os.environ
    protocol = env.get("WIRETIDE_KAFKA_SECURITY_PROTOCOL", "").upper()
    if not protocol or protocol == "PLAINTEXT":
        return {}
    out = {"security.protocol": protocol}
    if "SASL" in protocol:
        out["sasl.mechanism"] = env.get("WIRETIDE_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
        out["sasl.username"] = env.get("WIRETIDE_KAFKA_USERNAME", "")
        out["sasl.password"] = env.get("WIRETIDE_KAFKA_PASSWORD", "")
    if "SSL" in protocol and env.get("WIRETIDE_KAFKA_CA"):
        out["ssl.ca.location"] = env["WIRETIDE_KAFKA_CA"]
    return out


def kafka_client(bootstrap: str, **settings: object) -> dict[str, object]:
    """Settings for a confluent-kafka client: bootstrap, security, then `settings`."""
    return {"bootstrap.servers": bootstrap, **kafka_security(), **settings}


def retention_days() -> int:
    """How long the writer keeps calls: WIRETIDE_RETENTION_DAYS (default 7; 0: forever)."""
    from schemas.errors import WiretideError

    raw = os.environ.get("WIRETIDE_RETENTION_DAYS", "").strip()
    if not raw:
        return 7
    if not raw.isdigit():
        raise WiretideError(
            f"WIRETIDE_RETENTION_DAYS must be a whole number of days (0: forever), not {raw!r}"
        )
    return int(raw)


def rules_file() -> str | None:
    """The validation rules file the workers and the hub use: WIRETIDE_RULES, else none."""
    return os.environ.get("WIRETIDE_RULES") or None
