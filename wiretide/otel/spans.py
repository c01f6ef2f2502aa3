"""A call as span data, with OpenTelemetry's semantic conventions: sans-IO.

Each call gives a client span (the side that sent the request: its pod, namespace and
service are the span's resource) and a server span (the other side), in one trace, the
server span a child of the client span. Times are the captured ones: the request's first
byte to the response's last (or the last byte seen when there was no response).
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas.records import ApiCall
from wiretide.otel.context import Parent, call_ids

Attributes = tuple[tuple[str, str | int | bool], ...]

HTTP_LIKE = frozenset({"http", "http2", "gql", "websocket"})
DATABASES = {
    "postgresql": "postgresql",
    "mysql": "mysql",
    "mongodb": "mongodb",
    "redis": "redis",
}
MESSAGING = {"kafka": "kafka", "amqp": "rabbitmq"}
# gRPC codes that are the server's fault (semantic conventions: server span status)
_GRPC_SERVER_ERRORS = frozenset({2, 4, 12, 13, 14, 15})


@dataclass(frozen=True, slots=True)
class SpanData:
    """One span, ready for the SDK: ids, times, kind, attributes, its side's resource."""

    name: str
    kind: str  # client | server
    trace_id: int
    span_id: int
    parent_span_id: int  # 0: a root span
    parent_remote: bool  # the parent is the application's span (traceparent / B3)
    start_ns: int
    end_ns: int
    attributes: Attributes
    resource: Attributes
    error: str | None  # the status description of a failed call; None: not an error


def call_spans(call: ApiCall) -> tuple[SpanData, SpanData]:
    """The client and the server span of `call`."""
    ids = call_ids(call.call_id, call.request_headers)
    start, end = call.ts_ns, _end_ns(call)
    name, attributes = describe(call)
    parent: Parent | None = ids.parent
    client = SpanData(
        name=name,
        kind="client",
        trace_id=ids.trace_id,
        span_id=ids.client_span_id,
        parent_span_id=parent.span_id if parent else 0,
        parent_remote=parent is not None,
        start_ns=start,
        end_ns=end,
        attributes=attributes + _peer(call),
        resource=_side(call.src_service, call.src_pod, call.src_namespace, call.src_ip),
        error=_error(call, "client"),
    )
    server = SpanData(
        name=name,
        kind="server",
        trace_id=ids.trace_id,
        span_id=ids.server_span_id,
        parent_span_id=ids.client_span_id,
        parent_remote=False,
        start_ns=start,
        end_ns=end,
        attributes=attributes + _caller(call),
        resource=_side(call.dst_service, call.dst_pod, call.dst_namespace, call.dst_ip),
        error=_error(call, "server"),
    )
    return client, server


def _end_ns(call: ApiCall) -> int:
    return max(call.ts_ns, call.request_end_ns, call.response_ts_ns, call.response_end_ns)


def _side(service: str, pod: str, namespace: str, ip: str) -> Attributes:
    """A side's resource: service.name is the service, else the pod, else the address."""
    out: list[tuple[str, str | int | bool]] = [("service.name", service or pod or ip)]
    if pod:
        out.append(("k8s.pod.name", pod))
    if namespace:
        out.append(("k8s.namespace.name", namespace))
    if service:
        out.append(("k8s.service.name", service))
    return tuple(out)


def _peer(call: ApiCall) -> Attributes:
    """On the client span, who it called (peer.service draws backends' service graphs)."""
    out: list[tuple[str, str | int | bool]] = []
    peer = call.dst_service or call.dst_pod
    if peer:
        out.append(("peer.service", peer))
    if call.dst_pod:
        out.append(("wiretide.dst.k8s.pod.name", call.dst_pod))
    if call.dst_namespace:
        out.append(("wiretide.dst.k8s.namespace.name", call.dst_namespace))
    if call.dst_service:
        out.append(("wiretide.dst.service.name", call.dst_service))
    return tuple(out)


def _caller(call: ApiCall) -> Attributes:
    """On the server span, who called it (its own resource is the callee)."""
    out: list[tuple[str, str | int | bool]] = []
    if call.src_pod:
        out.append(("wiretide.src.k8s.pod.name", call.src_pod))
    if call.src_namespace:
        out.append(("wiretide.src.k8s.namespace.name", call.src_namespace))
    if call.src_service:
        out.append(("wiretide.src.service.name", call.src_service))
    return tuple(out)


def describe(call: ApiCall) -> tuple[str, Attributes]:
    """(span name, attributes) of a call: the protocol's conventions, then the common ones."""
    if call.protocol == "grpc":
        name, attrs = _grpc(call)
    elif call.protocol in HTTP_LIKE:
        name, attrs = _http(call)
    elif call.protocol in DATABASES:
        name, attrs = _database(call)
    elif call.protocol in MESSAGING:
        name, attrs = _messaging(call)
    elif call.protocol == "dns":
        name = f"DNS {call.method} {call.path}".strip()
        attrs = [("dns.question.name", call.path), ("dns.question.type", call.method)]
        attrs.append(("dns.response_code", call.reason))
    else:
        name, attrs = call.protocol, []
    return name, tuple(attrs) + _common(call)


def _common(call: ApiCall) -> Attributes:
    transport = "udp" if call.flow_id.startswith("udp:") else "tcp"
    out: list[tuple[str, str | int | bool]] = [
        ("server.address", call.dst_ip),
        ("server.port", call.dst_port),
        ("client.address", call.src_ip),
        ("client.port", call.src_port),
        ("network.transport", transport),
        ("wiretide.protocol", call.protocol),
        ("wiretide.call_id", call.call_id),
        ("wiretide.flow_id", call.flow_id),
    ]
    if call.node:
        out.append(("wiretide.node", call.node))
    if call.tls:
        out.append(("wiretide.tls", True))
    if call.flags:
        out.append(("wiretide.flags", ",".join(call.flags)))
    if call.request_body_size:
        out.append(("wiretide.request.body.size", call.request_body_size))
    if call.response_body_size:
        out.append(("wiretide.response.body.size", call.response_body_size))
    return tuple(out)


def _header(call: ApiCall, name: str) -> str:
    for key, value in call.request_headers:
        if key.lower() == name:
            return value
    return ""


def _http(call: ApiCall) -> tuple[str, list]:
    attrs: list[tuple[str, str | int | bool]] = [
        ("http.request.method", call.method),
        ("url.path", call.path),
        ("network.protocol.name", "http"),
    ]
    if call.query:
        attrs.append(("url.query", call.query))
    version = call.request_version.removeprefix("HTTP/")
    if version:
        attrs.append(("network.protocol.version", version))
    if call.response_ts_ns:
        attrs.append(("http.response.status_code", call.status))
    if call.request_body_size:
        attrs.append(("http.request.body.size", call.request_body_size))
    if call.response_body_size:
        attrs.append(("http.response.body.size", call.response_body_size))
    agent = _header(call, "user-agent")
    if agent:
        attrs.append(("user_agent.original", agent))
    if call.protocol == "gql":
        operation = _header(call, "graphql-operation-name")
        kind = _header(call, "graphql-operation-type")
        if operation:
            attrs.append(("graphql.operation.name", operation))
        if kind:
            attrs.append(("graphql.operation.type", kind))
    return f"{call.method} {call.path}".strip(), attrs


def _grpc(call: ApiCall) -> tuple[str, list]:
    service, _, method = call.path.lstrip("/").rpartition("/")
    attrs: list[tuple[str, str | int | bool]] = [
        ("rpc.system", "grpc"),
        ("rpc.service", service),
        ("rpc.method", method),
        ("network.protocol.name", "http"),
        ("network.protocol.version", "2"),
    ]
    if call.response_ts_ns:
        attrs.append(("rpc.grpc.status_code", call.status))
    return call.path.lstrip("/") or "grpc", attrs


def _database(call: ApiCall) -> tuple[str, list]:
    system = DATABASES[call.protocol]
    attrs: list[tuple[str, str | int | bool]] = [("db.system", system)]
    operation = call.method
    if call.protocol in ("postgresql", "mysql"):
        if call.path and operation.lower() not in ("startup", "handshake", "com_init_db"):
            attrs.append(("db.query.text", call.path))
            operation = call.path.split(None, 1)[0].upper() if call.path.split() else operation
        database = _header(call, "database")
        if database:
            attrs.append(("db.namespace", database))
    elif call.protocol == "mongodb":
        namespace, _, collection = call.path.partition(".")
        attrs.append(("db.namespace", namespace))
        if collection:
            attrs.append(("db.collection.name", collection))
    elif call.protocol == "redis":
        text = f"{call.method} {call.path}".strip()
        attrs.append(("db.query.text", text))
    attrs.append(("db.operation.name", operation))
    if call.response_ts_ns and call.status:
        attrs.append(("db.response.status_code", str(call.status)))
    target = call.path if call.protocol in ("mongodb", "redis") else ""
    return f"{operation} {target}".strip(), attrs


def _messaging(call: ApiCall) -> tuple[str, list]:
    attrs: list[tuple[str, str | int | bool]] = [
        ("messaging.system", MESSAGING[call.protocol]),
        ("messaging.operation.name", call.method),
    ]
    kind = _MESSAGING_TYPES.get(call.method)
    if kind:
        attrs.append(("messaging.operation.type", kind))
    if call.path:
        attrs.append(("messaging.destination.name", call.path))
    client_id = _header(call, "client_id") if call.protocol == "kafka" else ""
    if client_id:
        attrs.append(("messaging.client.id", client_id))
    if call.protocol == "kafka":
        group = _header(call, "group_id")
        if group:
            attrs.append(("messaging.consumer.group.name", group))
    else:
        key = _header(call, "routing-key")
        if key:
            attrs.append(("messaging.rabbitmq.destination.routing_key", key))
    if call.response_ts_ns and call.status:
        attrs.append(("error.type", call.reason or str(call.status)))
    return f"{call.method} {call.path}".strip(), attrs


_MESSAGING_TYPES = {
    "Produce": "send",
    "Fetch": "receive",
    "basic.publish": "send",
    "basic.deliver": "receive",
    "basic.get": "receive",
    "basic.consume": "receive",
    "basic.ack": "settle",
    "basic.nack": "settle",
    "basic.reject": "settle",
}


def _error(call: ApiCall, kind: str) -> str | None:
    """The span's error status: HTTP 5xx (4xx on the client too), gRPC codes (the server
    only for its own faults), any non-zero status of the other protocols."""
    if not call.response_ts_ns:
        return None
    status = call.status
    if call.protocol in HTTP_LIKE and call.protocol != "websocket":
        failed = status >= 500 or (kind == "client" and status >= 400)
        return f"HTTP {status}" if failed else None
    if call.protocol == "grpc":
        failed = status != 0 and (kind == "client" or status in _GRPC_SERVER_ERRORS)
        return (call.reason or f"gRPC status {status}") if failed else None
    if call.protocol in DATABASES or call.protocol in MESSAGING:
        return (call.reason or f"status {status}") if status else None
    return None
