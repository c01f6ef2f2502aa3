"""What a stored call becomes before it is sent: targets, safety, secrets, rewrites, the
replay mark, and gRPC bodies back in wire form (sans-IO)."""

from __future__ import annotations

import json

import pytest

from streams.dissect.grpc import body_json, decode_message, split_messages
from streams.rules.jsonpath import JsonPath
from tests.replay.send_kit import make_call
from wiretide.replay import grpcwire
from wiretide.replay.model import SentRequest
from wiretide.replay.plan import Options, Skip, plan
from wiretide.replay.targets import ReplayError, parse_target, parse_targets

ALL = parse_targets(["http://127.0.0.1:8080"])


def opts(**kw) -> Options:
    return Options(**{"targets": ALL, "run_id": "run-7", **kw})


def test_target_specs_route_by_service_address_or_everything() -> None:
    targets = parse_targets(
        ["svc/orders=http://o:81", "10.0.0.9:8080=https://a:8443/v2", "http://rest:80"]
    )
    base = make_call(1, path="/x", query="a=1")
    sent = plan(base, Options(targets))
    assert isinstance(sent, SentRequest) and sent.url == "https://a:8443/v2/x?a=1"
    other = make_call(2, path="/y", dst=("10.0.0.7", 9000))
    assert plan(other, Options(targets)).url == "http://rest/y"  # type: ignore[union-attr]
    from dataclasses import replace

    orders = replace(other, dst_service="orders", dst_namespace="shop")
    assert plan(orders, Options(targets)).url == "http://o:81/y"  # type: ignore[union-attr]
    only = parse_targets(["svc/orders=http://o:81"])
    skip = plan(other, Options(only))
    assert isinstance(skip, Skip) and skip.reason == "no --target for its destination (http)"


@pytest.mark.parametrize(
    "spec, says",
    [
        ("127.0.0.1:8080", "expected an http://, https:// or redis:// URL"),
        ("ftp://x", "expected an http://, https:// or redis:// URL"),
        ("svc/=http://a", "expected svc/NAME=URL"),
        ("host=http://a", "expected URL, svc/NAME=URL or HOST:PORT=URL"),
        ("h:99999=http://a", "expected URL, svc/NAME=URL or HOST:PORT=URL"),
        ("http://a:99999", "out of range"),
        ("http://a/?q=1", "no ?query"),
    ],
)
def test_bad_target_specs_are_one_line_errors(spec: str, says: str) -> None:
    with pytest.raises(ReplayError) as err:
        parse_target(spec)
    assert says in str(err.value) and "\n" not in str(err.value)


def test_two_catch_all_targets_are_refused() -> None:
    with pytest.raises(ReplayError, match="at most one catch-all"):
        parse_targets(["http://a", "http://b"])


def test_only_safe_methods_unless_allowed() -> None:
    post = make_call(1, "POST", "/orders", body=b"{}")
    skip = plan(post, opts())
    assert isinstance(skip, Skip)
    assert skip.reason == "method POST not allowed" and "--allow-methods POST" in skip.hint
    sent = plan(post, opts(allow_methods=frozenset({"GET", "POST"})))
    assert isinstance(sent, SentRequest) and sent.body == b"{}"
    for method in ("GET", "HEAD", "OPTIONS"):
        assert isinstance(plan(make_call(2, method), opts()), SentRequest)


def test_graphql_queries_go_mutations_need_their_method() -> None:
    def gql(op: str):
        return make_call(
            1,
            "POST",
            "/graphql",
            protocol="gql",
            headers=(("graphql-operation-type", op), ("content-type", "application/json")),
            body=b'{"query":"{ users { name } }"}',
        )

    sent = plan(gql("query"), opts())
    assert isinstance(sent, SentRequest)
    assert "graphql-operation-type" not in dict(sent.headers)  # the dissector's, not sent
    skip = plan(gql("mutation"), opts())
    assert isinstance(skip, Skip) and skip.reason == "GraphQL mutation (POST)"


def test_redacted_values_skip_the_call_until_filled() -> None:
    call = make_call(
        1,
        path="/api",
        query="id=7&token=[REDACTED]",
        headers=(("authorization", "[REDACTED]"), ("user-agent", "[REDACTED]")),
    )
    skip = plan(call, opts())
    assert skip == Skip(
        "[REDACTED] in authorization", "give --set-header authorization=VALUE or --secrets FILE"
    )
    skip = plan(call, opts(set_headers=(("Authorization", "Bearer x"),)))
    assert isinstance(skip, Skip) and skip.reason == "[REDACTED] in query token"
    sent = plan(call, opts(secrets=(("authorization", "Bearer s"), ("token", "t/1"))))
    assert isinstance(sent, SentRequest)
    assert dict(sent.headers)["authorization"] == "Bearer s"
    assert sent.url.endswith("/api?id=7&token=t%2F1")
    assert "user-agent" not in dict(sent.headers)  # the client's own: left out, not a skip
    literal = plan(call, opts(send_redacted=True))
    assert isinstance(literal, SentRequest)
    assert dict(literal.headers)["authorization"] == "[REDACTED]"


def test_redacted_json_body_is_found_and_filled_by_key() -> None:
    call = make_call(1, "POST", "/login", body=b'{"user":"ann","password":"[REDACTED]"}')
    allow = frozenset({"POST"})
    skip = plan(call, opts(allow_methods=allow))
    assert isinstance(skip, Skip) and skip.reason == "[REDACTED] in body"
    sent = plan(call, opts(allow_methods=allow, secrets=(("password", "pw"),)))
    assert json.loads(sent.body) == {"user": "ann", "password": "pw"}  # type: ignore[union-attr]


def test_rewrites_and_mark() -> None:
    call = make_call(
        1,
        path="/v1/items/3",
        query="a=1&b=2",
        headers=(("x-debug", "1"), ("accept", "*/*"), ("content-length", "0")),
    )
    sent = plan(
        call,
        opts(
            path_prefix=(("/v1", "/v2"),),
            set_query=(("b", "9"), ("c", "new")),
            drop_headers=frozenset({"x-debug"}),
            set_headers=(("X-Tenant", "t1"),),
        ),
    )
    assert isinstance(sent, SentRequest)
    assert sent.url == "http://127.0.0.1:8080/v2/items/3?a=1&b=9&c=new"
    assert sent.headers == (
        ("host", "127.0.0.1:8080"),
        ("accept", "*/*"),
        ("x-tenant", "t1"),
        ("x-wiretide-replay", "run-7"),
    )
    unmarked = plan(call, opts(mark=False))
    assert "x-wiretide-replay" not in dict(unmarked.headers)  # type: ignore[union-attr]


def test_set_json_sets_fields_and_keeps_other_bodies_byte_for_byte() -> None:
    body = b'{"user": {"id": 1, "tags": ["a", "b"]}, "n": 2}'
    call = make_call(1, "PUT", "/u", body=body)
    allow = frozenset({"PUT"})
    settings = ((JsonPath.parse("$.user.id"), 42), (JsonPath.parse("$.user.tags[*]"), "x"))
    sent = plan(call, opts(allow_methods=allow, set_json=settings))
    assert json.loads(sent.body) == {"user": {"id": 42, "tags": ["x", "x"]}, "n": 2}  # type: ignore[union-attr]
    untouched = plan(call, opts(allow_methods=allow, secrets=(("nothing", "here"),)))
    assert untouched.body == body  # type: ignore[union-attr]


def test_grpc_body_goes_back_to_the_wire_form_the_dissector_read() -> None:
    """Encode the stored JSON view, frame it, and the dissector reads the same view back."""
    stored = [
        {"1": "widget", "2": 42},
        {"1": 5, "2": "part 5 " * 40, "3": {"1": "fresh", "2": 7}, "4": ["red", "small"]},
        {"6": "/wAQ", "7": 1, "8": 18446744073709551615},
    ]
    for doc in stored:
        wire = grpcwire.request_body(json.dumps(doc).encode())
        (flag, payload), *_ = split_messages(wire)[0]
        assert flag == 0 and decode_message(payload) == doc
    several = grpcwire.request_body(json.dumps(stored).encode())
    view, flags = body_json(several, "", 1 << 20)
    assert json.loads(view) == stored and flags == []


def test_grpc_calls_are_http2_posts_with_authority_of_the_target() -> None:
    call = make_call(
        1,
        "POST",
        "/wiretide.demo.Catalog/Get",
        protocol="grpc",
        headers=(
            (":authority", "[REDACTED]"),
            ("content-type", "application/grpc"),
            ("grpc-encoding", "gzip"),
        ),
        body=b'{"1":"widget","2":42}',
    )
    sent = plan(call, opts())
    assert isinstance(sent, SentRequest) and sent.http_version == "2"
    assert sent.headers[0] == (":authority", "127.0.0.1:8080")
    assert "grpc-encoding" not in dict(sent.headers)  # sent uncompressed
    assert decode_message(sent.body[5:]) == {"1": "widget", "2": 42}


def test_incomplete_and_other_protocols_are_skipped_with_a_reason() -> None:
    from dataclasses import replace

    cut = replace(make_call(1), flags=("request_truncated",))
    assert plan(cut, opts()) == Skip("request incomplete in the capture")
    mongo = replace(make_call(2), protocol="mongodb")
    skip = plan(mongo, opts())
    assert isinstance(skip, Skip) and skip.reason == "protocol mongodb is not replayed"
