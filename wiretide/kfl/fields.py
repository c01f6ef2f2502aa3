"""The fields a KFL filter can name: type, where the Python back end finds each one in
the dict of `sinks.clickhouse.view.call_view`, and how the SQL back end reads it from
the `calls` table.

SQL expressions come from `wiretide.kfl.selectors.SELECTORS` (the one map from view
paths to SQL). An entry of the form `if(<no response>, NULL, <expr>)` is split into a
presence condition and `<expr>`, so a comparison compiles to `presence AND expr op value`:
two-valued (never NULL), and index-friendly on the bare column. Only these fixed
expressions are ever pasted into SQL text; every value is a bound parameter.

Kubernetes identity (`src.name`, `dst.pod.namespace`, `namespace`, ...) is stored by
the `enrich` stage; it is *missing* on calls whose endpoints are unknown (comparisons
with it are false; `x == nil` is true).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from wiretide.kfl.ast import Type
from wiretide.kfl.selectors import SELECTORS, VERDICT_PRESENT, VERDICT_SQL


@dataclass(frozen=True, slots=True)
class FieldSpec:
    name: str  # canonical KFL name
    type: Type
    view: tuple[str, ...]  # path into the call_view dict
    sql: str | None  # SQL value expression (None: not stored; always missing)
    present: str | None  # SQL condition for presence (None: always present when sql is set)
    scale: float | None = None  # value = view value * scale (SQL: (expr) * scale)
    doc: str = ""

    @property
    def element(self) -> Type | None:
        """Type of one entry of a map or list field."""
        return Type.STRING if self.type in (Type.MAP, Type.LIST) else None


_IF_NULL = re.compile(r"^if\((?P<absent>[^,()]+), NULL, (?P<expr>.+)\)$")


def _split(expr: str) -> tuple[str | None, str]:
    """SELECTORS expression → (presence condition or None, value expression)."""
    m = _IF_NULL.match(expr)
    if not m:
        return None, expr
    return f"NOT ({m.group('absent')})", m.group("expr")


_RESPONSE_PRESENT, _ = _split(SELECTORS["response.status"])


def body_text_sql(column: str) -> str:
    """SQL giving what `view.body_view` gives for the raw bytes in `column`: the text
    when it is UTF-8 without NUL (a multi-byte character cut at the very end by the
    capture cap becomes U+FFFD), else base64. Without this the two back ends would
    disagree on binary bodies."""
    b = column
    pads = "['\\x80', '\\x80\\x80', '\\x80\\x80\\x80', '\\xBF', '\\xBF\\xBF', '\\xBF\\xBF\\xBF']"
    branches = [f"isValidUTF8({b}), if(position({b}, '\\0') > 0, base64Encode({b}), {b})"]
    for k in (1, 2, 3):
        cut = (
            f"length({b}) >= {k} AND isValidUTF8(substring({b}, 1, length({b}) - {k}))"
            f" AND arrayExists(p -> isValidUTF8(concat(substring({b}, length({b}) - {k - 1}),"
            f" p)), {pads})"
        )
        text = f"concat(substring({b}, 1, length({b}) - {k}), '\\xEF\\xBF\\xBD')"
        branches.append(f"{cut}, if(position({b}, '\\0') > 0, base64Encode({b}), {text})")
    return f"multiIf({', '.join(branches)}, base64Encode({b}))"


def _stored(
    name: str,
    type_: Type,
    view: tuple[str, ...] | None = None,
    doc: str = "",
    *,
    body: bool = False,
) -> FieldSpec:
    present, expr = _split(SELECTORS[name])
    if body:
        expr = body_text_sql(expr)
    return FieldSpec(name, type_, view or tuple(name.split(".")), expr, present, doc=doc)


def _kubernetes(name: str, doc: str) -> FieldSpec:
    if name in SELECTORS:  # stored by now
        present, expr = _split(SELECTORS[name])
        present = present or f"isNotNull({expr})"
        return FieldSpec(name, Type.STRING, tuple(name.split(".")), expr, present, doc=doc)
    return FieldSpec(
        name,
        Type.STRING,
        tuple(name.split(".")),
        None,
        None,
        doc=doc + " (not stored yet: always missing)",
    )


_S, _N = Type.STRING, Type.NUMBER

_SPECS: list[FieldSpec] = [
    _stored("id", _S, doc="call id"),
    _stored("protocol", _S, doc="http, http2, grpc, dns, ..."),
    _stored("timestamp", Type.TIME, ("timestamp_ns",), "request's first byte (UTC)"),
    _stored("timestamp_ns", _N, doc="timestamp as Unix nanoseconds"),
    _stored("elapsed_ms", _N, doc="request to response, milliseconds (float)"),
    _stored("flow_id", _S),
    _stored("src.ip", _S),
    _stored("src.port", _N),
    _stored("dst.ip", _S),
    _stored("dst.port", _N),
    _stored("node", _S, doc="node that captured the call"),
    _stored("source", _S, doc="afpacket, tls or pcap"),
    _stored("tls", Type.BOOL, doc="captured as TLS plaintext"),
    _stored("flags", Type.LIST, doc="no_response, gap, request_truncated, ..."),
    FieldSpec("request", Type.OBJECT, ("request",), "1", None, doc="the request"),
    FieldSpec(
        "response",
        Type.OBJECT,
        ("response",),
        "1",
        _RESPONSE_PRESENT,
        doc="the response (missing when none came)",
    ),
    _stored("request.method", _S),
    _stored("request.path", _S),
    _stored("request.query", _S, doc="query string without '?'"),
    _stored("request.version", _S),
    _stored("request.headers", Type.MAP, doc="header name (lower-case) → value"),
    _stored("request.body", _S, doc="text, or base64 when binary", body=True),
    _stored("request.body_size", _N, doc="bytes on the wire"),
    _stored("response.status", _N),
    _stored("response.reason", _S),
    _stored("response.version", _S),
    _stored("response.headers", Type.MAP, doc="header name (lower-case) → value"),
    _stored("response.body", _S, doc="text, or base64 when binary", body=True),
    _stored("response.body_size", _N, doc="bytes on the wire"),
    _stored("verdicts", Type.MAP, doc="validation rule name → pass, or fail: <why>"),
    FieldSpec(
        "verdict",
        _S,
        ("verdict",),
        VERDICT_SQL,
        VERDICT_PRESENT,
        doc="fail if any validation rule failed, else pass (missing when none applied)",
    ),
]
_elapsed = next(s for s in _SPECS if s.name == "elapsed_ms")
_SPECS.append(
    FieldSpec(
        "elapsed_time",
        _N,
        _elapsed.view,
        _elapsed.sql,
        _elapsed.present,
        scale=1000.0,
        doc="request to response, microseconds (KFL2)",
    )
)
for _name, _doc in (
    ("src.name", "source pod or service name"),
    ("dst.name", "destination pod or service name"),
    ("src.namespace", "source namespace"),
    ("dst.namespace", "destination namespace"),
    ("src.pod.name", "source pod"),
    ("src.pod.namespace", "source pod's namespace"),
    ("dst.pod.name", "destination pod"),
    ("dst.pod.namespace", "destination pod's namespace"),
    ("src.service.name", "source service"),
    ("src.service.namespace", "source service's namespace"),
    ("dst.service.name", "destination service"),
    ("dst.service.namespace", "destination service's namespace"),
):
    _SPECS.append(_kubernetes(_name, _doc))

FIELDS: dict[str, FieldSpec] = {spec.name: spec for spec in _SPECS}

# Other spellings (Mizu/KFL1 and KFL2) → canonical names.
ALIASES: dict[str, str] = {
    "method": "request.method",
    "path": "request.path",
    "query": "request.query",
    "status": "response.status",
    "status_code": "response.status",
    "elapsedTime": "elapsed_ms",
    "namespace": "dst.namespace",
    "request_headers": "request.headers",
    "response_headers": "response.headers",
    "request_body_size": "request.body_size",
    "response_body_size": "response.body_size",
    "src.pod.ip": "src.ip",
    "dst.pod.ip": "dst.ip",
}

# Bare protocol names are macros for `protocol == "<name>"` (`tls` is the field).
PROTOCOLS: frozenset[str] = frozenset(
    {
        "http",
        "http2",
        "grpc",
        "gql",
        "websocket",
        "amqp",
        "kafka",
        "redis",
        "dns",
        "mongodb",
        "mysql",
        "postgresql",
        "ldap",
        "radius",
        "diameter",
        "icmp",
        "tcp",
        "udp",
        "sctp",
        "nats",
        "cassandra",
        "mqtt",
    }
)


def lookup(name: str) -> FieldSpec | None:
    return FIELDS.get(ALIASES.get(name, name))


def names() -> list[str]:
    return sorted({*FIELDS, *ALIASES})
