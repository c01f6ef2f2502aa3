"""GraphQL over HTTP: the golden capture (graphql-core behind aiohttp, queried by curl and
requests) checked against what the clients sent and got; the document reader checked
against graphql-core's own parser; junk never breaks it; plain HTTP calls stay `http`."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.records import ApiCall, flow_id
from streams.dissect.graphql import graphql_call, maybe_graphql
from streams.dissect.graphql.document import (
    GraphQLSyntaxError,
    Operation,
    leading_operation,
    operations,
    pick,
)
from streams.dissect.http import HTTP1
from streams.reassembly.events import Direction, Flow
from tests.golden.protocols.dissect import dissect_pcap

graphql = pytest.importorskip("graphql")  # graphql-core: the reference parser

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "protocols" / "gql"
FLOW = Flow(flow_id("10.0.0.1", 40000, "10.0.0.2", 80), "10.0.0.1", 40000, "10.0.0.2", 80)


# ------------------------------------------------------------------ golden


@pytest.fixture(scope="module")
def golden() -> list[tuple[dict, dict]]:
    facts = json.loads((GOLDEN / "basic.client.json").read_text())
    views = dissect_pcap(GOLDEN / "basic.pcap")
    assert len(views) == len(facts)
    return list(zip(facts, views, strict=True))


def expected_operation(request: dict | list) -> tuple[str, str]:
    """(type, name) of the operation a client request runs, by graphql-core's parser."""
    first = request[0] if isinstance(request, list) else request
    try:
        doc = graphql.parse(first["query"])
    except graphql.GraphQLError:
        return "", ""
    ops = [d for d in doc.definitions if isinstance(d, graphql.OperationDefinitionNode)]
    wanted = first.get("operationName")
    op = next(o for o in ops if not wanted or (o.name and o.name.value == wanted))
    return op.operation.value, op.name.value if op.name else ""


def test_graphql_requests_become_gql_calls_with_their_operation(golden):
    for fact, view in golden:
        if fact["path"] != "/graphql":
            continue
        assert view["protocol"] == "gql"
        req = view["request"]
        assert (req["method"], req["path"]) == (fact["method"], "/graphql")
        assert view["response"]["status"] == fact["status"]
        op_type, name = expected_operation(fact["request"])
        if not op_type:
            continue  # graphql-core cannot parse it: see the syntax error test
        assert req["headers"]["graphql-operation-type"] == op_type
        assert req["headers"].get("graphql-operation-name", "") == name


def same_but_redacted(got, want) -> bool:
    """`got` is `want` with some values replaced by the redaction policy's marker."""
    if got == "[REDACTED]":
        return True
    if isinstance(want, dict):
        return (
            isinstance(got, dict)
            and got.keys() == want.keys()
            and all(same_but_redacted(got[k], want[k]) for k in want)
        )
    if isinstance(want, list):
        return (
            isinstance(got, list)
            and len(got) == len(want)
            and all(same_but_redacted(g, w) for g, w in zip(got, want, strict=True))
        )
    return got == want


def test_bodies_are_the_clients_requests_and_the_servers_answers(golden):
    for fact, view in golden:
        if fact["method"] == "POST":
            assert same_but_redacted(json.loads(view["request"]["body"]), fact["request"])
        else:
            assert view["request"]["query"] == urlencode(fact["request"])
        assert same_but_redacted(json.loads(view["response"]["body"]), fact["response"])


def test_syntax_error_keeps_the_servers_error_and_what_the_document_started_as(golden):
    (fact, view) = next(
        (f, v) for f, v in golden if "errors" in (f["response"] if f["path"] else {})
    )
    assert fact["status"] == 400
    assert fact["response"]["errors"][0]["message"].startswith("Syntax Error")
    assert view["flags"] == ["graphql_syntax_error", "graphql_error"]
    headers = view["request"]["headers"]
    assert (headers["graphql-operation-type"], headers["graphql-operation-name"]) == (
        "query",
        "Broken",
    )


def test_anonymous_get_and_batch(golden):
    by_kind = {(f["method"], isinstance(f["request"], list)): v for f, v in golden}
    anonymous = by_kind[("GET", False)]
    assert "graphql-operation-name" not in anonymous["request"]["headers"]
    assert anonymous["request"]["headers"]["graphql-operation-type"] == "query"
    batch = by_kind[("POST", True)]
    assert batch["flags"] == ["batch"]
    assert batch["request"]["headers"]["graphql-operation-name"] == "Names"


def test_a_json_api_with_a_query_field_stays_http(golden):
    (view,) = [v for f, v in golden if f["path"] == "/search"]
    assert view["protocol"] == "http"
    assert not any(k.startswith("graphql") for k in view["request"]["headers"])


# ---------------------------------------------------------- document reader


DOCUMENTS = [
    "{ a }",
    "query { a }",
    "query Q { a }",
    "mutation M($x: Int = 3) { a(x: $x) }",
    "subscription S { events { id } }",
    "query Q($f: In = {a: 1, b: [1, 2]}) @cached(ttl: 10) { a(f: $f) { ... on T { b } } }",
    '# a comment with { braces\nquery C { a(s: "}}}") }',
    'query B { a(s: """block "quoted" } \\""" still""") }',
    "fragment F on T { a }\nquery Q { ...F }\nmutation M { b { ...F } }",
    "query A { a }, query B { b }",
    "\ufeff query Q { a }",
    "query Q { a ",
    "query Q { a } }",
    "type T { a: Int }",
    "query Q",
    '{ a(s: "unterminated) }',
    "",
    "# nothing",
    "query Q { a(x: [1, 2) }",
]


@pytest.mark.parametrize("doc", DOCUMENTS)
def test_operations_agree_with_graphql_core(doc):
    try:
        parsed = graphql.parse(doc)
        theirs = [
            Operation(d.operation.value, d.name.value if d.name else "")
            for d in parsed.definitions
            if isinstance(d, graphql.OperationDefinitionNode)
        ]
        their_error = not theirs
    except graphql.GraphQLError:
        theirs, their_error = None, True
    try:
        ours = operations(doc)
    except GraphQLSyntaxError:
        assert their_error, f"graphql-core accepts {doc!r}"
        return
    if theirs is not None:
        assert ours == theirs


def test_operation_name_picks_among_several():
    ops = operations("query A { a } mutation B { b } subscription C { c }")
    assert pick(ops, "B") == Operation("mutation", "B")
    assert pick(ops, "C") == Operation("subscription", "C")
    assert pick(ops, "Z") is None
    assert pick(ops, None) is None  # ambiguous: a server refuses it
    assert pick(operations("query A { a }"), None) == Operation("query", "A")


def test_leading_operation_of_a_broken_document():
    assert leading_operation("# c\n mutation Do($a: Int) { x(") == Operation("mutation", "Do")
    assert leading_operation("  { x") == Operation("query", "")
    assert leading_operation("queryX { a }") is None


names = st.from_regex(r"[_A-Za-z][_0-9A-Za-z]{0,6}", fullmatch=True)
selections = st.recursive(
    names,
    lambda inner: st.builds(
        lambda n, kids: f"{n} {{ {' '.join(kids)} }}",
        names,
        st.lists(inner, min_size=1, max_size=3),
    ),
    max_leaves=8,
)
op_defs = st.builds(
    lambda kind, name, sels, comment: (
        f"{'# ' + comment + chr(10) if comment else ''}{kind} {name} {{ {' '.join(sels)} }}"
    ),
    st.sampled_from(["query", "mutation", "subscription"]),
    names.filter(lambda n: n not in ("query", "mutation", "subscription", "fragment", "on")),
    st.lists(selections, min_size=1, max_size=3),
    st.one_of(st.just(""), st.text(alphabet='{}()[] ab#"', max_size=10)),
)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(defs=st.lists(op_defs, min_size=1, max_size=4))
def test_generated_documents_agree_with_graphql_core(defs):
    doc = "\n".join(defs)
    parsed = graphql.parse(doc)
    theirs = [
        Operation(d.operation.value, d.name.value)
        for d in parsed.definitions
        if isinstance(d, graphql.OperationDefinitionNode)
    ]
    assert operations(doc) == theirs


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(doc=st.text(alphabet='{}()[]"#\n ,.:$@!=|&abqueryfmtion\\', max_size=60))
def test_junk_documents_raise_only_the_syntax_error(doc):
    try:
        operations(doc)
    except GraphQLSyntaxError:
        pass
    leading_operation(doc)


# ------------------------------------------------------------- on HTTP calls


def http_call(method: str, body: bytes = b"", query: str = "", response: bytes = b"") -> ApiCall:
    return ApiCall(
        call_id="0" * 32,
        protocol="http",
        ts_ns=1,
        src_ip="10.0.0.1",
        src_port=40000,
        dst_ip="10.0.0.2",
        dst_port=80,
        flow_id=FLOW.flow_id,
        method=method,
        path="/graphql",
        query=query,
        request_body=body,
        response_body=response,
    )


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    method=st.sampled_from(["POST", "GET", "PUT"]),
    body=st.one_of(
        st.binary(max_size=80),
        st.builds(
            lambda q, extra: json.dumps({"query": q, **extra}).encode(),
            st.text(max_size=40),
            st.dictionaries(
                st.sampled_from(["operationName", "variables"]),
                st.one_of(st.none(), st.integers(), st.text(max_size=5)),
            ),
        ),
        st.builds(lambda q: json.dumps([{"query": q}]).encode(), st.text(max_size=40)),
        st.just(b"[]"),
        st.just(b'[1, {"query": 1}]'),
    ),
    query=st.text(max_size=30),
    response=st.one_of(st.binary(max_size=40), st.just(b'{"errors": [{}]}')),
)
def test_any_http_call_gives_a_gql_call_or_none(method, body, query, response):
    out = graphql_call(http_call(method, body, query, response))
    assert out is None or out.protocol == "gql"


def test_plain_calls_fail_the_quick_check():
    assert not maybe_graphql(b'{"items": [1, 2, 3]}', "page=2")
    assert maybe_graphql(b'{"query": "{ a }"}', "")
    assert maybe_graphql(b"", "query=%7Ba%7D")


def test_http_dissector_emits_gql_for_a_post_and_http_otherwise():
    body = json.dumps({"query": "mutation Up { up }", "operationName": "Up"}).encode()
    d = HTTP1(FLOW)
    req = b"POST /graphql HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    other = b"GET /health HTTP/1.1\r\nHost: h\r\n\r\n"
    resp = b'HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\n{"data": {}}\n'
    out = d.receive(Direction.CLIENT_TO_SERVER, req + other, 1, 100)
    out += d.receive(Direction.SERVER_TO_CLIENT, resp + resp, 2, 900)
    gql, health = out
    assert (gql.protocol, health.protocol) == ("gql", "http")
    assert ("graphql-operation-type", "mutation") in gql.request_headers
    assert ("graphql-operation-name", "Up") in gql.request_headers
    unanswered = d.receive(Direction.CLIENT_TO_SERVER, req, 3, 100 + len(req + other))
    unanswered += d.close(4)
    (last,) = unanswered
    assert last.protocol == "gql" and last.flags == ("no_response",)
