"""KFL's two back ends on concrete calls stored in real embedded chDB: every operator,
helper, macro and both spellings; missing-value semantics; injection attempts.

Each case runs the SQL (through `read_calls`) and the Python predicate (over
`call_view`) and expects both to give exactly the listed call ids. chDB hosts one data
dir per process, so the store is module-scoped and closed at the end.
"""

from __future__ import annotations

import calendar
from pathlib import Path

import pytest

from schemas.records import ApiCall
from sinks.clickhouse import CallWriter, count_calls, open_store, read_calls
from sinks.clickhouse.view import body_view, call_view
from tests.conftest import http_call
from wiretide.kfl import KflError, check, parse, render, to_predicate, to_sql
from wiretide.kfl.fields import FIELDS, body_text_sql
from wiretide.kfl.selectors import SELECTORS

BASE = calendar.timegm((2026, 5, 1, 12, 0, 0, 0, 0, 0)) * 10**9  # 2026-05-01T12:00:00Z
NOW = BASE + 60 * 10**9
MS = 1_000_000


def call(cid: str, *, dt_s: float = 0, elapsed_ms: float | None = 2.5, **fields) -> ApiCall:
    ts = BASE + int(dt_s * 10**9)
    base: dict = dict(
        src_port=40001,
        flow_id=f"flow-{cid}",
        node="node-a",
        source="afpacket",
        path="/api/users",
        request_headers=(("Host", "users.prod"), ("Accept", "*/*")),
    )
    if elapsed_ms is not None:
        base["response_ts_ns"] = ts + int(elapsed_ms * MS)
        base["response_end_ns"] = ts + int(elapsed_ms * MS) + 1000
    else:
        base.update(status=0, reason="", response_version="", response_headers=())
    return http_call(cid, ts, **{**base, **fields})


CALLS = [
    call(
        "c1",
        query="page=1",
        request_headers=(
            ("Host", "users.prod"),
            ("X-Request-Id", "abc-123"),
            ("Content-Type", "application/json"),
        ),
        response_body=b'{"name":"ann"}',
        response_body_size=14,
    ),
    call(
        "c2",
        dt_s=1,
        method="POST",
        path="/api/orders",
        tls=True,
        status=201,
        reason="Created",
        src_ip="10.0.0.3",
        src_port=50000,
        request_body=b"hello world",
        request_body_size=11,
        elapsed_ms=30,
    ),
    call("c3", dt_s=-600, path="/health", elapsed_ms=0.5, dst_port=9090),
    call("c4", dt_s=2, status=404, reason="Not Found", flags=("gap",), src_port=8080),
    call(
        "c5",
        dt_s=3,
        method="DELETE",
        path="/api/users/7",
        status=500,
        reason="Internal Server Error",
        elapsed_ms=120,
        dst_ip="10.0.0.9",
    ),
    call("c6", dt_s=4, path="/slow", elapsed_ms=None, flags=("no_response",)),
    call(
        "c7",
        dt_s=5,
        protocol="grpc",
        method="POST",
        path="/pkg.Svc/Call",
        request_version="HTTP/2",
        response_version="HTTP/2",
    ),
    call(
        "c8",
        dt_s=6,
        protocol="dns",
        method="QUERY",
        path="example.com",
        request_headers=(),
        response_headers=(),
        dst_port=53,
    ),
    call("c9", dt_s=7, path="/bin", response_body=b"\x00\x01\xff", response_body_size=3),
    call(
        "c10",
        dt_s=8,
        path="/cut",
        response_body=b"caf\xc3",
        response_body_size=5,
        flags=("response_truncated", "gap"),
    ),
    call(
        "c11",
        dt_s=-7200,
        path="/Api/Users",
        method="get",
        node="node-b",
        source="tls",
        request_headers=(("HOST", "Users.Prod"), ("X-Request-Id", "x' OR 1=1 --")),
    ),
]
IDS = {c.call_id for c in CALLS}
VIEWS = [call_view(c) for c in CALLS]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory):
    directory: Path = tmp_path_factory.mktemp("kfl") / "store"
    with open_store(f"chdb://{directory}") as opened:
        CallWriter(opened).write(CALLS)
        yield opened


def sql_ids(store, text: str) -> set[str]:
    where, params = to_sql(parse(text), now_ns=NOW)
    return {row["id"] for row in read_calls(store, where_sql=where, params=params)}


def py_ids(text: str) -> set[str]:
    keep = to_predicate(parse(text), now_ns=NOW)
    return {view["id"] for view in VIEWS if keep(view)}


def both(store, text: str) -> set[str]:
    sql, py = sql_ids(store, text), py_ids(text)
    assert sql == py, f"{text}: SQL {sorted(sql)} vs Python {sorted(py)}"
    return sql


def ids(*names: str) -> set[str]:
    return set(names)


def all_but(*names: str) -> set[str]:
    return IDS - set(names)


CASES: list[tuple[str, set[str]]] = [
    # macros and spellings
    ("http", all_but("c7", "c8")),
    ("grpc", ids("c7")),
    ("dns", ids("c8")),
    ("kafka", set()),
    ("http and response.status == 404", ids("c4")),
    ("http && status_code == 404", ids("c4")),
    ("grpc or dns", ids("c7", "c8")),
    ("grpc || dns", ids("c7", "c8")),
    ("not http", ids("c7", "c8")),
    ("!http", ids("c7", "c8")),
    ("http AND NOT tls", all_but("c2", "c7", "c8")),
    # comparison operators
    ("response.status != 200", ids("c2", "c4", "c5")),
    ("response.status < 201", all_but("c2", "c4", "c5", "c6")),
    ("response.status <= 201", all_but("c4", "c5", "c6")),
    ("response.status > 201", ids("c4", "c5")),
    ("response.status >= 404", ids("c4", "c5")),
    ("status_code >= 500", ids("c5")),
    ("500 <= status_code", ids("c5")),
    ("response.status == 404.0", ids("c4")),
    ("response.status < 200.5 and response.status > 199.5", all_but("c2", "c4", "c5", "c6")),
    ('request.path > "/api/users"', ids("c3", "c5", "c6", "c7", "c8", "c9", "c10")),
    ('request.path < "/a"', ids("c11")),
    ("src.port == 8080 and dst.port == 8080", ids("c4")),
    ("src.port == dst.port", ids("c4")),
    ("src.ip != dst.ip and src.port > dst.port", all_but("c4")),
    ('dst.ip == "10.0.0.9"', ids("c5")),
    ('src.ip == "10.0.0.3"', ids("c2")),
    ('method in ["POST", "DELETE"]', ids("c2", "c5", "c7")),
    ("method in []", set()),
    ("tls", ids("c2")),
    ("tls == false and grpc", ids("c7")),
    ('node == "node-b" or source == "tls"', ids("c11")),
    # missing values: false for == and != alike; ! negates the whole condition
    ("response.status == 200", ids("c1", "c3", "c7", "c8", "c9", "c10", "c11")),
    ("response.status != 404", all_but("c4", "c6")),
    ("!(response.status == 404)", all_but("c4")),
    ("response == nil", ids("c6")),
    ("response != nil", all_but("c6")),
    ("response", all_but("c6")),
    ("!response", ids("c6")),
    ("elapsed_ms > 100", ids("c5")),
    ("elapsedTime < 1", ids("c3")),
    ("elapsed_time >= 30000", ids("c2", "c5")),
    ('elapsed_time > duration("29ms")', ids("c2", "c5")),
    ("elapsed_ms == nil", ids("c6")),
    ('response.reason == ""', set()),
    ('response.reason != "OK"', ids("c2", "c4", "c5")),
    # headers: names case-insensitive, values not
    ('request.headers["x-request-id"] == "abc-123"', ids("c1")),
    ('request.headers["X-Request-ID"] == "abc-123"', ids("c1")),
    ('request.headers.host == "users.prod"', all_but("c8", "c11")),
    ("request.headers['Host'] == 'Users.Prod'", ids("c11")),
    ('request.headers["x-request-id"] != nil', ids("c1", "c11")),
    ('request.headers["x-request-id"] == nil', all_but("c1", "c11")),
    ('request.headers["x-request-id"] != "abc-123"', ids("c11")),
    ('request.headers["x-request-id"]', ids("c1", "c11")),
    ('map_get(request.headers, "X-Request-Id") == "abc-123"', ids("c1")),
    ('response.headers["content-type"].startsWith("application/")', all_but("c6", "c8")),
    ('request.headers.* == "abc-123"', ids("c1")),
    ('request.headers[*].contains("json")', ids("c1")),
    ('response.headers.*.contains("json")', all_but("c6", "c8")),
    ("size(request.headers) == 3", ids("c1")),
    ("size(request.headers) == 0", ids("c8")),
    ("request.headers.size() >= 2", all_but("c8")),
    # lists
    ('flags.* == "gap"', ids("c4", "c10")),
    ('flags[0] == "gap"', ids("c4")),
    ('flags[1] == "gap"', ids("c10")),
    ('flags.contains("no_response")', ids("c6")),
    ('contains(flags, "gap")', ids("c4", "c10")),
    ("size(flags) == 0", all_but("c4", "c6", "c10")),
    ("flags[5] == nil", IDS),
    # string helpers, both styles
    ('request.path.startsWith("/api")', ids("c1", "c2", "c4", "c5")),
    ('startsWith(request.path, "/api")', ids("c1", "c2", "c4", "c5")),
    ('path.endsWith("s")', ids("c1", "c2", "c4", "c11")),
    ('endsWith(path, "/7")', ids("c5")),
    ('path.contains("user")', ids("c1", "c4", "c5")),
    ('contains(path, "")', IDS),
    ('!request.path.startsWith("/health") and dst.name != "x"', set()),
    ('!request.path.startsWith("/health") and !(dst.name == "x")', all_but("c3")),
    ("size(path) == 7", ids("c3")),
    ("size(request.path) > 10", ids("c2", "c5", "c7", "c8")),
    # regexes: literal with ==, !=, matches()
    ('response.status == r"4.*"', ids("c4")),
    ('http and response.status == r"^5"', ids("c5")),
    ('response.status != r"^2"', ids("c4", "c5")),
    ('request.path == r"^/api/users(/\\d+)?$"', ids("c1", "c4", "c5")),
    ('path.matches("^/API")', set()),
    ('path.matches(r"(?i)^/api/users$")', ids("c1", "c4", "c11")),
    ('matches(request.path, r"h$")', ids("c3")),
    ('src.ip == r"\\.3$"', ids("c2")),
    # time
    ("timestamp > minutes(-5)", all_but("c3", "c11")),
    ("timestamp < minutes(-5)", ids("c3", "c11")),
    ('timestamp > now() - duration("5m")', all_but("c3", "c11")),
    ('timestamp >= now() - duration("1h5m") and timestamp < now() - duration("5m")', ids("c3")),
    ("timestamp > hours(-3) and timestamp < seconds(-59)", ids("c3", "c11", "c1")),
    ("timestamp > days(-1)", IDS),
    ('timestamp > datetime("5/1/2026, 11:59:59 AM")', all_but("c3", "c11")),
    ('timestamp >= timestamp("2026-05-01T12:00:00Z")', all_but("c3", "c11")),
    ('timestamp == timestamp("2026-05-01T12:00:01Z")', ids("c2")),
    ('timestamp == "2026-05-01T14:00:05+02:00"', ids("c7")),
    (f"timestamp < {BASE // 10**6}", ids("c3", "c11")),
    ("timestamp_ns > 0", IDS),
    # bodies: text as the view shows it (binary as base64, a cut character as U+FFFD)
    ('response.body.contains("ann")', ids("c1")),
    ('request.body == "hello world"', ids("c2")),
    ('response.body == "AAH/"', ids("c9")),
    ('response.body == "caf\\uFFFD"', ids("c10")),
    ("request.body_size > 10", ids("c2")),
    ("response.body_size == 3", ids("c9")),
    # Kubernetes identity is not stored yet: always missing
    ('src.pod.name == "x"', set()),
    ('src.service.name == "api-gateway" && dst.pod.namespace == "prod"', set()),
    ("namespace == nil and src.name == nil", IDS),
    # constants and limit
    ("true", IDS),
    ("false", set()),
    ('1 == 1 and "a" < "b"', IDS),
    ("http and limit(3)", all_but("c7", "c8")),
    ("limit(1)", IDS),
    # precedence: and before or; ! covers a comparison
    ('grpc or dns and method == "QUERY"', ids("c7", "c8")),
    ('(grpc or dns) and method == "QUERY"', ids("c8")),
    ("!response.status == 200", ids("c2", "c4", "c5", "c6")),
    ('id == "c1"\n  or id == "c2"  // comment\n', ids("c1", "c2")),
]


@pytest.mark.parametrize(("text", "expected"), CASES, ids=[c[0] for c in CASES])
def test_back_ends_agree_on_concrete_calls(store, text: str, expected: set[str]) -> None:
    assert both(store, text) == expected


def test_limit_is_carried_and_read_calls_applies_it(store) -> None:
    query = parse("http and limit(2)")
    assert query.limit == 2
    where, params = to_sql(query, now_ns=NOW)
    rows = read_calls(store, where_sql=where, params=params, limit=query.limit)
    assert [r["id"] for r in rows] == ["c9", "c10"]  # the newest two, oldest first


@pytest.mark.parametrize(
    "text",
    [
        'path == "x\' OR 1=1 --"',
        'path == "a\\\\\\"); DROP TABLE calls; --"',
        'path == "a\\"); DROP TABLE calls; --"',
        "request.headers[\"x' OR '1'='1\"] == \"1\"",
        "request.headers[\"host'] = '' OR 1=1 OR request_headers['\"] != nil",
        'path == "{kfl0:String}"',
        'path == "\\u0000\'; TRUNCATE TABLE calls; --"',
        "path.matches(r\"'\\) OR 1=1 OR match\\(path, '\")",
        'path.startsWith("\'") or path.endsWith("\\\\")',
    ],
)
def test_injection_attempts_match_nothing_and_change_nothing(store, text: str) -> None:
    before = count_calls(store)
    assert both(store, text) == set()
    assert count_calls(store) == before == len(CALLS)
    where, _ = to_sql(parse(text), now_ns=NOW)
    for word in ("DROP", "TRUNCATE", "1=1", "'1'", '"', "request_headers['"):
        assert word not in where


def test_injection_text_is_matched_as_plain_text(store) -> None:
    assert both(store, 'request.headers["x-request-id"] == "x\' OR 1=1 --"') == ids("c11")


def test_filters_on_cheap_columns_do_not_read_bodies() -> None:
    for text in [
        'http and response.status >= 500 and request.path.startsWith("/api")',
        'src.ip == "10.0.0.1" and dst.port == 8080 and timestamp > minutes(-5)',
        'request.headers["x-id"] == "1" and method == "GET"',
    ]:
        where, _ = to_sql(parse(text), now_ns=NOW)
        assert "body" not in where


def test_field_map_agrees_with_selectors(store) -> None:
    """fields.py splits SELECTORS' `if(no response, NULL, x)` into presence and x; the
    recombined expression must give what SELECTORS gives."""
    for spec in FIELDS.values():
        if spec.name not in SELECTORS or spec.name.endswith(".body"):
            continue
        ours = spec.sql if spec.present is None else f"if({spec.present}, {spec.sql}, NULL)"
        sql = (
            (f"SELECT count() FROM calls FINAL WHERE NOT ({SELECTORS[spec.name]} <=> {ours})")
            if spec.type.name not in ("MAP", "LIST")
            else (
                f"SELECT count() FROM calls FINAL WHERE toString({SELECTORS[spec.name]}) != "
                f"toString({ours})"
            )
        )
        assert store.client.query(sql).result_rows[0][0] == 0, spec.name


BODIES = [
    b"",
    b"a",
    b"\x00",
    b"ab\x00",
    b"caf\xc3",
    b"caf\xc3\xa9",
    b"\xe2\x82",
    b"\xe2\x82\xac",
    b"x\xf0\x9f\x98",
    b"\xf0\x9f",
    b"\xf0",
    b"\xff",
    b"a\xffb",
    b"\xc0\x80",
    b"\xed\xa0\x80",
    b"\xf4\x90\x80\x80",
    b"\xe0\x80",
    b"\xe0\xa0",
    b"\xf4\x8f\xbf",
    b"\xf5\x80",
    b"\x80",
    b"ok\xc3\x00\xc3",
    b"\x00\xe2\x82",
    "日本語".encode() + b"\xe6\x97",
    b"\xc3\xc3",
]


def test_body_sql_gives_what_the_view_gives(store) -> None:
    """The SQL body expression reproduces view.body_view byte for byte (text, cut
    character, or base64), so body filters agree on binary bodies too."""
    expr = body_text_sql("b")
    for body in BODIES:
        got = store.client.query(
            f"SELECT {expr} AS t FROM (SELECT unhex({{h:String}}) AS b)",
            parameters={"h": body.hex()},
            column_formats={"*": "bytes"},
        ).result_rows[0][0]
        got = got.decode("utf-8") if isinstance(got, bytes) else got
        assert got == body_view(body)[0], body


# ---- long and deep filters (issue 11: never stop, never leak) ---------------------------


def _any_path(*paths: str, n: int = 10_000) -> str:
    """A generated "any of these" filter: n `or` terms, the given paths among them."""
    terms = [f'path == "/generated/{i}"' for i in range(n - len(paths))]
    for k, path in enumerate(paths):
        terms.insert(k * 997 % len(terms), f'path == "{path}"')
    return " or ".join(terms)


def _nested(depth: int) -> str:
    """`(A and (B or !(C and !(...))))`, `depth` conditions deep counting the innermost
    `response.status == 404`, which is what it reads as: the layers keep what it keeps."""
    text, layers = "response.status == 404", 1
    while layers + 5 <= depth:
        text = f"(status_code >= 0 and {text})"
        text = f"(status_code == 12345 or {text})"
        text = f'!(path != "/nope" and !{text})'
        layers += 5
    for k in range(depth - layers):
        text = f"(status_code >= 0 and {text})" if k % 2 else f'(id == "none" or {text})'
    return text


LONG_CASES: list[tuple[str, str, set[str]]] = [
    ("10,000 or", _any_path("/health", "/api/orders"), ids("c3", "c2")),
    (
        "10,000 and",
        " and ".join([f'path != "/generated/{i}"' for i in range(9_999)] + ['path != "/health"']),
        all_but("c3"),
    ),
    (
        "10,000 or over two fields",
        " or ".join(
            f"dst.port == {10_000 + i}" if i % 2 else f'method == "M{i}"' for i in range(9_998)
        )
        + ' or method == "DELETE" or dst.port == 53',
        ids("c5", "c8"),
    ),
    (
        "10,000 in",
        "dst.port in [" + ", ".join(map(str, range(20_000, 29_999))) + ", 9090]",
        ids("c3"),
    ),
    ("5,000 !", "!" * 5_000 + "grpc", ids("c7")),
    ("5,001 not", "not " * 5_001 + "http", ids("c7", "c8")),
    ("3,000 !(", "!(" * 3_000 + "grpc" + ")" * 3_000, ids("c7")),
    ("500 parentheses", "(" * 500 + 'path == "/health"' + ")" * 500, ids("c3")),
    ("200 levels", _nested(200), ids("c4")),
    (
        "IN out of range",
        "status_code == -1 or status_code == 70000 or status_code == 404",
        ids("c4"),
    ),
    (
        "NOT IN out of range",
        "dst.port != -1 and dst.port != 99999 and dst.port != 53 and http",
        all_but("c7", "c8"),
    ),
    (
        "IN on size",
        "size(path) == -1 or size(path) == 7 or size(path) == 4",
        ids("c3", "c9", "c10"),
    ),
    ("10,000 + terms", "status_code == " + " + ".join(["0"] * 9_999 + ["404"]), ids("c4")),
]


@pytest.mark.parametrize(
    ("text", "expected"), [c[1:] for c in LONG_CASES], ids=[c[0] for c in LONG_CASES]
)
def test_long_and_deep_filters_run_on_both_back_ends(store, text: str, expected: set[str]) -> None:
    assert both(store, text) == expected
    query = parse(text)
    assert parse(render(query)) == query  # the canonical text is no deeper than the tree


@pytest.mark.parametrize(
    ("text", "where", "reason"),
    [
        (_nested(201), (1, _nested(201).rindex(">= 0") + 1), "conditions nest more than 200"),
        ("size(" * 100 + "path" + ")" * 100 + " > 1", (1, 325), "more than 64 calls or lists"),
        ("path" + ".size()" * 3_000 + " > 1", (1, 1), "nests too deeply"),
    ],
)
def test_absurd_nesting_is_one_line(text: str, where: tuple[int, int], reason: str) -> None:
    with pytest.raises(KflError) as caught:
        parse(text)
    assert reason in caught.value.reason
    assert (caught.value.line, caught.value.column) == where
    assert "\n" not in str(caught.value)


def test_sql_too_long_for_clickhouse_is_one_line() -> None:
    """Terms that share no IN list (ranges here) can exceed ClickHouse's query size."""
    query = parse(" or ".join(f"status_code > {i}" for i in range(10_000)))
    assert to_predicate(query)(VIEWS[0])  # the live tail has no such limit
    with pytest.raises(KflError, match=r"^1:1: this filter makes [\d,]+ characters of SQL"):
        to_sql(query)


def test_a_catastrophic_regex_runs_in_linear_time(store) -> None:
    """`(a+)+$` backtracks exponentially on "aaa...!" in Python's `re`; RE2 does not
    backtrack, so this returns (it would not, in any lifetime, with `re`)."""
    keep = to_predicate(parse('request.path == r"(a+)+$"'))
    assert not keep(call_view(call("evil", path="a" * 50_000 + "!")))
    assert keep(call_view(call("fine", path="!" + "a" * 50_000)))
    assert both(store, 'path.matches("(a+)+$") or path == r"(.*a){12}"') == set()


@pytest.mark.parametrize(
    ("text", "column", "reason"),
    [
        ('path == r"(a)\\1"', 9, "backreferences"),
        ('path == r"(?<=a)b"', 9, "lookaround"),
        ('path.matches("a**")', 14, "bad regex: bad repetition operator: **"),
        ('path == r"x{2}{3}"', 9, "bad repetition operator"),
    ],
)
def test_regexes_re2_cannot_run_are_one_line_errors(text: str, column: int, reason: str) -> None:
    for run in (parse, check):
        with pytest.raises(KflError) as caught:
            run(text)
        assert reason in caught.value.reason
        assert (caught.value.line, caught.value.column) == (1, column), str(caught.value)
        assert "\n" not in str(caught.value)
