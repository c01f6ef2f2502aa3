"""Settings shared by every process: one frozen `Settings`, built once where a process
starts (flags over WIRETIDE_* environment over defaults) and passed down. The environment
only hands settings to child processes (`Settings.to_env`)."""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from schemas.errors import BrokerError, WiretideError

EOF_HEADER = "wiretide-eof"  # marks the end of a replayed capture on a segments partition
DLQ_SUFFIX = ".dlq"
DEFAULT_DATA = "~/.wiretide"


def checked_port(value: int | str, what: str) -> int:
    """A broker port: 1 to 65534 (its controller listens on the next one)."""
    text = str(value).strip()
    port = int(text) if text.isdigit() else 0
    if not 0 < port < 65535:
        raise BrokerError(
            f"{what} {text!r}: expected a port from 1 to 65534 (the controller takes the next)"
        )
    return port


def _partitions(raw: str, what: str) -> int:
    if not raw.isdigit() or int(raw) < 1:
        raise WiretideError(f"{what} must be a whole number of at least 1, not {raw!r}")
    return int(raw)


def _days(raw: str, what: str) -> int:
    if not raw.isdigit():
        raise WiretideError(f"{what} must be a whole number of days (0: forever), not {raw!r}")
    return int(raw)


def _metrics_port(raw: str, what: str) -> int:
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise WiretideError(f"{what} must be a port number (1-65535), not {raw!r}")
    return int(raw)


def _data(raw: str, what: str) -> Path:
    return Path(raw).expanduser().resolve()


# field -> (environment variable, parser of its text: (text, name for errors) -> value)
_Parser = Callable[[str, str], object]
_TEXT: _Parser = lambda raw, what: raw  # noqa: E731
_ENV: dict[str, tuple[str, _Parser]] = {
    "kafka": ("WIRETIDE_KAFKA", _TEXT),
    "prefix": ("WIRETIDE_PREFIX", _TEXT),
    "data": ("WIRETIDE_DATA", _data),
    "clickhouse": ("WIRETIDE_CLICKHOUSE", _TEXT),
    "clickhouse_cluster": ("WIRETIDE_CLICKHOUSE_CLUSTER", _TEXT),
    "partitions": ("WIRETIDE_PARTITIONS", _partitions),
    "retention_days": ("WIRETIDE_RETENTION_DAYS", _days),
    "rules": ("WIRETIDE_RULES", _TEXT),
    "redaction": ("WIRETIDE_REDACTION", _TEXT),
    "node": ("WIRETIDE_NODE", _TEXT),
    "metrics_port": ("WIRETIDE_METRICS_PORT", _metrics_port),
    "kafka_port": ("WIRETIDE_KAFKA_PORT", checked_port),
    "kafka_security_protocol": ("WIRETIDE_KAFKA_SECURITY_PROTOCOL", lambda raw, _: raw.upper()),
    "kafka_sasl_mechanism": ("WIRETIDE_KAFKA_SASL_MECHANISM", _TEXT),
    "kafka_username": ("WIRETIDE_KAFKA_USERNAME", _TEXT),
    "kafka_password": ("WIRETIDE_KAFKA_PASSWORD", _TEXT),
    "kafka_ca": ("WIRETIDE_KAFKA_CA", _TEXT),
    "hub_token": ("WIRETIDE_HUB_TOKEN", _TEXT),
    "cache": ("WIRETIDE_CACHE", _TEXT),
    "helm": ("WIRETIDE_HELM", _TEXT),
}
_STRIPPED = {
    "partitions",
    "retention_days",
    "kafka_port",
    "hub_token",
    "metrics_port",
}  # blanks: the default


class _Prefixed:
    """A topic or group name as the settings' pipeline calls it: their prefix, then it."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, settings: Settings | None, owner: type | None = None) -> str:
        return self.name if settings is None else settings.prefix + self.name


@dataclass(frozen=True)
class Settings:
    """Where a pipeline's parts meet (Kafka, topics, store, data dir) and how they run.
    None: not set (the default applies where it is used)."""

    kafka: str | None = None  # bootstrap; None: the local broker of `data`
    prefix: str = ""  # keeps several pipelines apart on one broker (tests, tenants)
    data: Path = field(default_factory=lambda: _data(DEFAULT_DATA, ""))
    clickhouse: str | None = None  # store DSN; None: embedded chDB inside `data`
    clickhouse_cluster: str = ""  # tables ON CLUSTER this
    partitions: int = 4  # of the segments and calls topics made
    retention_days: int = 7  # how long the writer keeps calls; 0: forever
    rules: str | None = None  # validation rules file the workers and the hub use
    redaction: str | None = None  # redaction policy file of the workers
    node: str | None = None  # this capture's node name; None: the host name
    metrics_port: int | None = None  # agent/worker/sink serve /metrics here; None: off
    kafka_port: int | None = None  # the local broker's preferred port; None: 9092
    kafka_security_protocol: str | None = None  # PLAINTEXT | SSL | SASL_PLAINTEXT | SASL_SSL
    kafka_sasl_mechanism: str | None = None  # None: SCRAM-SHA-512
    kafka_username: str | None = None
    kafka_password: str | None = field(default=None, repr=False)
    kafka_ca: str | None = None  # CA file for SSL
    hub_token: str | None = field(default=None, repr=False)
    cache: str | None = None  # where the broker's jars are cached
    helm: str | None = None  # the helm binary to deploy with

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Defaults, then WIRETIDE_* of `environ` (default: os.environ), then `overrides`
        (flags; None or "": not given). A bad value raises a one-line WiretideError."""
        environ = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for name, (var, parse) in _ENV.items():
            raw = environ.get(var, "")
            if name in _STRIPPED:
                raw = raw.strip()
            if raw:
                values[name] = parse(raw, var)
        for name, value in overrides.items():
            if name not in _ENV:
                raise TypeError(f"Settings has no {name!r}")
            if value is not None and value != "":  # an empty flag is no flag, as before
                flag = "--" + name.replace("_", "-")
                values[name] = _ENV[name][1](str(value), flag)  # checked as the env's are
        return cls(**values)

    @staticmethod
    def variable(name: str) -> str:
        """The environment variable of setting `name` (for messages that name it)."""
        return _ENV[name][0]

    def to_env(self) -> dict[str, str]:
        """WIRETIDE_* variables a child process's `from_env` reads back into these settings."""
        out = {}
        for name, (var, _) in _ENV.items():
            value = getattr(self, name)
            if value is not None:
                out[var] = str(value)
        return out

    def child_env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment of a child process: `base` (default: os.environ) with its
        WIRETIDE_* variables replaced by these settings."""
        base = os.environ if base is None else base
        names = {var for var, _ in _ENV.values()}
        return {**{k: v for k, v in base.items() if k not in names}, **self.to_env()}

    def replace(self, **changes: object) -> Settings:
        return dataclasses.replace(self, **changes)

    # -- topics and groups: the prefix keeps several pipelines apart on one broker --------
    segments_topic = _Prefixed("wiretide.segments")
    calls_topic = _Prefixed("wiretide.calls")
    endpoints_topic = _Prefixed("wiretide.endpoints")  # compacted: IP -> Endpoint
    violations_topic = _Prefixed("wiretide.violations")  # keyed by rule name: Violation
    coverage_topic = _Prefixed("wiretide.coverage")  # compacted: node -> NodeCoverage
    streams_group = _Prefixed("wiretide-streams")
    sink_group = _Prefixed("wiretide-sink")

    # -- the store -------------------------------------------------------------------------
    @property
    def store_dsn(self) -> str:
        """`--clickhouse`, else WIRETIDE_CLICKHOUSE, else embedded chDB inside the data dir."""
        return self.clickhouse or self.own_store_dsn

    @property
    def own_store_dsn(self) -> str:
        """The embedded chDB store inside the data dir."""
        return f"chdb://{self.data / 'chdb'}"

    def writable_data(self) -> Path:
        """The data dir, created if needed and checked by writing into it (root ignores
        permissions, a read-only mount does not); one line saying why if it cannot be used."""
        path = self.data
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

    # -- Kafka clients ---------------------------------------------------------------------
    def kafka_security(self) -> dict[str, str]:
        """librdkafka settings for an existing Kafka with TLS and/or SASL."""
        protocol = self.kafka_security_protocol or ""
        if not protocol or protocol == "PLAINTEXT":
            return {}
        out = {"security.protocol": protocol}
        if "SASL" in protocol:
            out["sasl.mechanism"] = self.kafka_sasl_mechanism or "SCRAM-SHA-512"
            out["sasl.username"] = self.kafka_username or ""
            out["sasl.password"] = self.kafka_password or ""
        if "SSL" in protocol and self.kafka_ca:
            out["ssl.ca.location"] = self.kafka_ca
        return out

    def kafka_client(self, **settings: object) -> dict[str, object]:
        """Settings for a confluent-kafka client: bootstrap, security, then `settings`."""
        if not self.kafka:
            raise WiretideError("no Kafka bootstrap: pass --kafka or set WIRETIDE_KAFKA")
        return {"bootstrap.servers": self.kafka, **self.kafka_security(), **settings}
