"""The span mapping (wiretide/otel): a call -> a client and a server span with the
semantic conventions of its protocol, ids derived from the call id, and the application's
own trace joined through W3C traceparent or B3 headers."""

from __future__ import annotations

import pytest

from schemas.errors import WiretideError
from tests.conftest import http_call
from wiretide.otel.context import call_ids, propagated_parent, sampled
from wiretide.otel.endpoint import parse_endpoint
from wiretide.otel.spans import call_spans

T0 = 1_700_000_000_000_000_000
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"


def _call(**fields):
    base = dict(ts_ns=T0, request_end_ns=T0 + 10, response_ts_ns=T0 + 5_000_000)
    return http_call("c1", **{**base, **fields})


def attrs(span):
    return dict(span.attributes)


def test_http_call_is_a_client_and_a_server_span_in_one_trace():
    call = _call(
        path="/api/users",
        query="page=2",
        response_end_ns=T0 + 6_000_000,
        request_headers=(("User-Agent", "curl/8"),),
        src_pod="web-1",
        src_namespace="shop",
        src_service="web",
        dst_pod="users-7",
        dst_namespace="shop",
        dst_service="users",
    )
    client, server = call_spans(call)
    assert (client.kind, server.kind) == ("client", "server")
    assert client.trace_id == server.trace_id
    assert server.parent_span_id == client.span_id and client.parent_span_id == 0
    assert (client.start_ns, client.end_ns) == (T0, T0 + 6_000_000)
    assert client.name == "GET /api/users"
    a = attrs(client)
    assert a["http.request.method"] == "GET"
    assert a["url.path"] == "/api/users" and a["url.query"] == "page=2"
    assert a["http.response.status_code"] == 200
    assert (a["server.address"], a["server.port"]) == ("10.0.0.2", 8080)
    assert (a["client.address"], a["client.port"]) == ("10.0.0.1", 40000)
    assert a["user_agent.original"] == "curl/8"
    assert a["peer.service"] == "users"
    assert dict(client.resource) == {
        "service.name": "web",
        "k8s.pod.name": "web-1",
        "k8s.namespace.name": "shop",
        "k8s.service.name": "web",
    }
    assert dict(server.resource)["k8s.pod.name"] == "users-7"
    # each span also names the other side
    assert a["wiretide.dst.k8s.pod.name"] == "users-7"
    assert a["wiretide.dst.k8s.namespace.name"] == "shop"
    assert attrs(server)["wiretide.src.k8s.pod.name"] == "web-1"
    assert attrs(server)["wiretide.src.service.name"] == "web"
    assert "peer.service" not in attrs(server)
    assert dict(server.resource)["service.name"] == "users"
    assert client.error is None and server.error is None


def test_unknown_sides_are_named_by_address():
    client, server = call_spans(_call())
    assert dict(client.resource) == {"service.name": "10.0.0.1"}
    assert dict(server.resource) == {"service.name": "10.0.0.2"}


@pytest.mark.parametrize(
    ("status", "client_error", "server_error"),
    [(200, False, False), (404, True, False), (503, True, True)],
)
def test_http_errors_follow_the_conventions(status, client_error, server_error):
    client, server = call_spans(_call(status=status))
    assert (client.error is not None, server.error is not None) == (client_error, server_error)


def test_grpc_call_has_rpc_attributes():
    call = _call(protocol="grpc", method="POST", path="/shop.Catalog/Get", status=0)
    client, server = call_spans(call)
    a = attrs(client)
    assert client.name == "shop.Catalog/Get"
    assert (a["rpc.system"], a["rpc.service"], a["rpc.method"]) == ("grpc", "shop.Catalog", "Get")
    assert a["rpc.grpc.status_code"] == 0
    assert "http.request.method" not in a
    # NOT_FOUND (5) fails the client only; INTERNAL (13) both sides
    nf = call_spans(_call(protocol="grpc", path="/a.B/C", status=5, reason="no such"))
    assert nf[0].error == "no such" and nf[1].error is None
    internal = call_spans(_call(protocol="grpc", path="/a.B/C", status=13))
    assert internal[0].error and internal[1].error


@pytest.mark.parametrize(
    ("protocol", "method", "path", "want"),
    [
        (
            "postgresql",
            "query",
            "select * from users where id = $1",
            {"db.system": "postgresql", "db.query.text": "select * from users where id = $1",
             "db.operation.name": "SELECT"},
        ),
        (
            "mysql",
            "COM_QUERY",
            "UPDATE t SET a = 1",
            {"db.system": "mysql", "db.query.text": "UPDATE t SET a = 1",
             "db.operation.name": "UPDATE"},
        ),
        (
            "redis",
            "SET",
            "session:1",
            {"db.system": "redis", "db.query.text": "SET session:1", "db.operation.name": "SET"},
        ),
        (
            "mongodb",
            "find",
            "shop.orders",
            {"db.system": "mongodb", "db.namespace": "shop", "db.collection.name": "orders",
             "db.operation.name": "find"},
        ),
    ],
)  # fmt: skip
def test_database_calls_have_db_attributes(protocol, method, path, want):
    client, _ = call_spans(_call(protocol=protocol, method=method, path=path, status=0))
    a = attrs(client)
    assert {k: a.get(k) for k in want} == want
    assert "http.request.method" not in a and "url.path" not in a


def test_database_error_fails_both_sides():
    call = _call(protocol="postgresql", method="query", path="select x", status=1,
                 reason="42703 column x does not exist")  # fmt: skip
    client, server = call_spans(call)
    assert client.error == server.error == "42703 column x does not exist"


def test_kafka_and_amqp_calls_have_messaging_attributes():
    produce = _call(
        protocol="kafka",
        method="Produce",
        path="orders",
        status=0,
        request_headers=(("client_id", "shop-api"),),
    )
    a = attrs(call_spans(produce)[0])
    assert a["messaging.system"] == "kafka"
    assert a["messaging.operation.name"] == "Produce"
    assert a["messaging.operation.type"] == "send"
    assert a["messaging.destination.name"] == "orders"
    assert a["messaging.client.id"] == "shop-api"
    publish = _call(
        protocol="amqp",
        method="basic.publish",
        path="events/order.created",
        status=0,
        request_headers=(("routing-key", "order.created"),),
    )
    a = attrs(call_spans(publish)[0])
    assert a["messaging.system"] == "rabbitmq"
    assert a["messaging.destination.name"] == "events/order.created"
    assert a["messaging.rabbitmq.destination.routing_key"] == "order.created"


def test_unanswered_call_ends_at_its_last_byte_and_is_no_error():
    call = _call(status=0, response_ts_ns=0, request_end_ns=T0 + 900, flags=("no_response",))
    client, server = call_spans(call)
    assert client.end_ns == T0 + 900
    assert "http.response.status_code" not in attrs(client)
    assert attrs(client)["wiretide.flags"] == "no_response"
    assert client.error is None


def test_ids_come_from_the_call_id_alone():
    first, second = call_spans(_call()), call_spans(_call(path="/other"))
    assert [s.span_id for s in first] == [s.span_id for s in second]
    assert first[0].trace_id == second[0].trace_id
    other = call_spans(http_call("c2", T0))
    assert other[0].trace_id != first[0].trace_id
    assert len({first[0].span_id, first[1].span_id, other[0].span_id, other[1].span_id}) == 4
    assert first[0].trace_id < 1 << 128 and first[0].span_id < 1 << 64


def test_traceparent_joins_the_applications_trace():
    headers = (("Traceparent", f"00-{TRACE}-{SPAN}-01"),)
    client, server = call_spans(_call(request_headers=headers))
    assert client.trace_id == server.trace_id == int(TRACE, 16)
    assert client.parent_span_id == int(SPAN, 16) and client.parent_remote
    assert server.parent_span_id == client.span_id and not server.parent_remote
    assert client.span_id == call_ids("c1", ()).client_span_id  # ids still from the call


@pytest.mark.parametrize(
    "headers",
    [
        (("b3", f"{TRACE}-{SPAN}-1"),),
        (("X-B3-TraceId", TRACE), ("X-B3-SpanId", SPAN), ("X-B3-Sampled", "1")),
    ],
)
def test_b3_headers_join_the_applications_trace(headers):
    parent = propagated_parent(headers)
    assert parent is not None
    assert (parent.trace_id, parent.span_id) == (int(TRACE, 16), int(SPAN, 16))


def test_b3_64_bit_trace_ids_are_taken():
    parent = propagated_parent((("b3", f"a3ce929d0e0e4736-{SPAN}"),))
    assert parent is not None and parent.trace_id == 0xA3CE929D0E0E4736


@pytest.mark.parametrize(
    "value",
    [
        f"00-{'0' * 32}-{SPAN}-01",  # all-zero trace id
        f"00-{TRACE}-{'0' * 16}-01",
        f"ff-{TRACE}-{SPAN}-01",  # version ff is invalid
        f"00-{TRACE}-{SPAN}",
        f"00-{TRACE[:-1]}x-{SPAN}-01",
        "garbage",
    ],
)
def test_a_malformed_traceparent_starts_a_trace_of_our_own(value):
    assert propagated_parent((("traceparent", value),)) is None
    client, _ = call_spans(_call(request_headers=(("traceparent", value),)))
    assert client.parent_span_id == 0 and client.trace_id == call_ids("c1", ()).trace_id


def test_sampling_is_by_trace_and_deterministic():
    ids = [call_ids(f"call-{n}", ()).trace_id for n in range(2000)]
    kept = [t for t in ids if sampled(t, 0.25)]
    assert 350 < len(kept) < 650
    assert kept == [t for t in ids if sampled(t, 0.25)]
    assert all(sampled(t, 1.0) for t in ids) and not any(sampled(t, 0.0) for t in ids)


def test_endpoints_are_checked_in_one_line():
    assert parse_endpoint("http://jaeger:4317").url == "http://jaeger:4317"
    assert parse_endpoint("http://jaeger").url == "http://jaeger:4317"
    assert parse_endpoint("https://c:443", "grpc").insecure is False
    assert parse_endpoint("http://c:4318", "http").url == "http://c:4318/v1/traces"
    assert parse_endpoint("http://c/otlp/traces", "http").url == "http://c:4318/otlp/traces"
    for bad, protocol in [("jaeger:4317", "grpc"), ("ftp://x", "grpc"), ("http://:4317", "grpc"),
                          ("http://x:99999", "grpc"), ("http://x:4317/v1", "grpc"),
                          ("http://x", "thrift")]:  # fmt: skip
        with pytest.raises(WiretideError) as err:
            parse_endpoint(bad, protocol)
        assert "\n" not in str(err.value)
