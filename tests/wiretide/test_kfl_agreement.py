"""Property: KFL's SQL back end (run by real embedded chDB) and its Python predicate
(over `call_view`) take exactly the same calls, for any filter and any calls.

Two properties share one module-scoped store (chDB hosts one data dir per process):
a fixed, varied batch of calls with Hypothesis generating filters, and Hypothesis
generating both calls and filters (the table is emptied for each example).
Generated filters are KFL text in both spellings, so the parser is exercised too, and
values come from the same pools as the calls so that filters do match.
"""

from __future__ import annotations

import calendar
import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.records import ApiCall
from sinks.clickhouse import CallWriter, open_store, read_calls
from sinks.clickhouse.view import call_view
from wiretide.kfl import parse, render, to_predicate, to_sql
from wiretide.kfl.ast import quote, raw_quote

BASE = calendar.timegm((2026, 5, 1, 12, 0, 0, 0, 0, 0)) * 10**9
NOW = BASE + 60 * 10**9
S = 10**9

PROTOCOLS = ["http", "grpc", "dns", "http2", ""]
IPS = ["10.0.0.1", "10.0.0.2", "10.0.0.10", "::1", "fe80::1", ""]
PORTS = [0, 53, 80, 8080, 40000, 65535]
METHODS = ["GET", "POST", "get", "DELETE", "", "QUERY"]
PATHS = ["/", "/api/users", "/api", "/api/users/7", "/health", "", "/Api", "/é/日本", "/a b"]
HEADER_NAMES = ["host", "Host", "content-type", "Content-Type", "x-id", "X-ID", "accept"]
STRINGS = [
    "",
    "pass",
    "fail",
    "a",
    "A",
    "GET",
    "POST",
    "/api/users",
    "/api",
    "/",
    "10.0.0.1",
    "10.0.0.2",
    "http",
    "grpc",
    "application/json",
    "json",
    "gap",
    "no_response",
    "é",
    "日本",
    "x\ny",
    "\x00",
    "'",
    "\\",
    "AAH/",
    "caf\ufffd",
    "OK",
    "HTTP/1.1",
    "node-a",
    "users.prod",
    "Z",
    "~",
    "a b",
    "\U0001f600",
]
FLAGS = ["gap", "no_response", "request_truncated", "response_truncated", "malformed"]
BODIES = [
    b"",
    b"hello",
    b'{"name":"ann"}',
    b"\x00\x01\xff",
    b"caf\xc3",
    b"caf\xc3\xa9",
    b"\xe2\x82",
    b"a\xffb",
    b"json",
    b"\xf0\x9f\x98",
    b"\x00",
    "日本".encode(),
]
RULES = ["slow", "json-name", "Header Check", "é"]
VERDICTS = ["pass", "pass", "fail: 412.5ms > 300ms", 'fail: content-type: "text/html" !~ /json/']
STATUSES = [0, 100, 200, 201, 204, 301, 404, 500, 503, 599]
ELAPSED = [None, None, 1, 999_999, 1_000_000, 2_500_000, 123_456_789, 10 * S]
OFFSETS = [-3 * 3600 * S, -600 * S, -S, 0, 1, S, 300 * S]
NUMBERS = [
    0,
    1,
    -1,
    53,
    80,
    200,
    201,
    404,
    500,
    8080,
    65535,
    2.5,
    0.5,
    199.99,
    1e3,
    1e12,
    10**12,
    2**40,
    2**40 + 0.5,
    9_007_199_254_740_993,
    BASE,
    BASE + 7,
    float(BASE + 123_456),
    BASE - 3 * 3600 * S,
]
REGEXES = [
    "^/api",
    "s$",
    r"\d+",
    "(?i)get",
    "a|b",
    "^$",
    ".",
    "^.{3}$",
    "[0-9]{3}",
    r"\bapi\b",
    "x.y",
    r"^\w+$",
    r"\s",
    "4..",
    "^5",
    "ok",
    "[^a-z]",
    "é",
    "(a)(b)?",
    r"\.",
    "^10\\.0\\.0\\.1$",
    "[a-z]+/[a-z]+",
]
TEXT = "aAz/éÉ日Ω\n\t\r\x00'\\ -.~09_"


def make_call(
    cid: str, pick: Callable[[list], Any], text: Callable[[], str], body: Callable[[], bytes]
) -> ApiCall:
    ts = BASE + pick(OFFSETS) + pick([0, 7, 123_456])
    elapsed = pick(ELAPSED)
    headers = tuple(
        (pick(HEADER_NAMES + [text()]), pick(STRINGS + [text()])) for _ in range(pick([0, 1, 2, 3]))
    )
    response = {}
    if elapsed is not None:
        response = dict(
            status=pick(STATUSES),
            reason=pick(["OK", "Not Found", "", text()]),
            response_version=pick(["HTTP/1.1", "HTTP/2"]),
            response_body=body(),
            response_body_size=pick([0, 3, 2**40]),
            response_ts_ns=ts + elapsed,
            response_end_ns=ts + elapsed + 5,
            response_headers=tuple(
                (pick(HEADER_NAMES), pick(STRINGS + [text()])) for _ in range(pick([0, 1, 2]))
            ),
        )
    return ApiCall(
        call_id=cid,
        protocol=pick(PROTOCOLS),
        ts_ns=ts,
        src_ip=pick(IPS),
        src_port=pick(PORTS),
        dst_ip=pick(IPS),
        dst_port=pick(PORTS),
        flow_id=pick(["f1", "f2", text()]),
        node=pick(["node-a", "node-b", ""]),
        source=pick(["afpacket", "tls", "pcap"]),
        tls=pick([False, True]),
        method=pick(METHODS + [text()]),
        path=pick(PATHS + [text()]),
        query=pick(["", "page=1", text()]),
        request_version=pick(["HTTP/1.1", "HTTP/2", ""]),
        request_headers=headers,
        request_body=body(),
        request_body_size=pick([0, 5, 11, 2**40]),
        flags=tuple(f for f in FLAGS if pick([False, False, True])),
        src_pod=pick(["", "", "front-1"]),
        src_namespace=pick(["", "shop"]),
        src_service=pick(["", "front"]),
        dst_pod=pick(["", "db-0"]),
        dst_namespace=pick(["", "", "data"]),
        dst_service=pick(["", "catalogue"]),
        verdicts=tuple((r, pick(VERDICTS)) for r in RULES if pick([False, True])),
        **response,
    )


def random_calls(n: int, seed: int = 7) -> list[ApiCall]:
    rng = random.Random(seed)

    def text() -> str:
        return "".join(rng.choice(TEXT) for _ in range(rng.randrange(6)))

    def body() -> bytes:
        if rng.random() < 0.7:
            return rng.choice(BODIES)
        return bytes(rng.randrange(256) for _ in range(rng.randrange(6)))

    return [make_call(f"r{i:04d}", rng.choice, text, body) for i in range(n)]


@st.composite
def calls(draw: st.DrawFn) -> list[ApiCall]:
    n = draw(st.integers(0, 8))
    out = []
    for i in range(n):
        out.append(
            make_call(
                f"h{i}",
                lambda options: draw(st.sampled_from(options)),
                lambda: draw(st.text(max_size=5)),
                lambda: draw(st.one_of(st.sampled_from(BODIES), st.binary(max_size=6))),
            )
        )
    return out


# ---- filters as KFL text ----------------------------------------------------------------

HEADER_FIELDS = (
    [f"request.headers[{quote(h)}]" for h in HEADER_NAMES[::2]]
    + [f"response.headers[{quote(h)}]" for h in HEADER_NAMES[::2]]
    + ["request.headers.host", "request.headers.*", "response.headers[*]"]
)
STRING_FIELDS = [
    "protocol",
    "flow_id",
    "src.ip",
    "dst.ip",
    "node",
    "source",
    "request.method",
    "method",
    "request.path",
    "path",
    "request.query",
    "request.version",
    "request.body",
    "response.body",
    "response.reason",
    "response.version",
    "flags[0]",
    "flags[1]",
    "flags.*",
    "src.name",
    "namespace",
    "dst.name",
    "src.namespace",
    "src.pod.name",
    "dst.pod.namespace",
    "src.service.name",
    "dst.service.namespace",
    "verdict",
    'verdicts["slow"]',
    "verdicts.*",
    "verdicts[*]",
    *HEADER_FIELDS,
]
INT_FIELDS = [
    "response.status",
    "status_code",
    "src.port",
    "dst.port",
    "request.body_size",
    "response.body_size",
    "timestamp_ns",
    "size(request.path)",
    "size(request.headers)",
    "size(verdicts)",
    "size(flags)",
    "size(response.body)",
    'size(request.headers["host"])',
]
NUMBER_FIELDS = [*INT_FIELDS, "elapsed_ms", "elapsedTime", "elapsed_time"]
OPS = ["==", "!=", "<", "<=", ">", ">="]


def number_text(n: int | float) -> str:
    return repr(n) if isinstance(n, float) else str(n)


regexes = st.one_of(
    st.sampled_from(REGEXES),
    st.lists(
        st.sampled_from(
            [
                "a",
                "/",
                "p",
                "1",
                ".",
                "[a-c]",
                r"\d",
                "x*",
                "(a|/)",
                "(é)?",
                "^",
                "$",
                "0+",
                r"\w",
                r"\s",
                r"\b",
                r"\W",
                "(?i)",
                "[^/]",
                ".+?",
                "É",
                r"\z",
                "[\\d.]",
                "\n",
            ]
        ),
        min_size=1,
        max_size=4,
    ).map("".join),
)
strings = st.one_of(st.sampled_from(STRINGS), st.text(alphabet=TEXT, max_size=4))
numbers = st.one_of(
    st.sampled_from(NUMBERS), st.integers(-10, 70000), st.floats(-1e6, 1e13, allow_nan=False)
)
times = st.one_of(
    st.sampled_from(OFFSETS).map(lambda o: f"timestamp({quote(_iso(BASE + o))})"),
    st.integers(-4 * 3600, 600).map(
        lambda s: f'now() - duration("{-s}s")' if s < 0 else f'now() + duration("{s}s")'
    ),
    st.sampled_from(
        [
            "minutes(-5)",
            "hours(-1)",
            "seconds(-61)",
            "days(-1)",
            "now()",
            'datetime("5/1/2026, 11:50:00 AM")',
            f"{BASE // 10**6}",
        ]
    ),
)


def _iso(ns: int) -> str:
    from wiretide.kfl.ast import format_time

    return format_time(ns)


atoms = st.one_of(
    st.builds(
        lambda f, op, v: f"{f} {op} {quote(v)}",
        st.sampled_from(STRING_FIELDS),
        st.sampled_from(OPS),
        strings,
    ),
    st.builds(
        lambda f, op, v: f"{f} {op} {number_text(v)}",
        st.sampled_from(NUMBER_FIELDS),
        st.sampled_from(OPS),
        numbers,
    ),
    st.builds(
        lambda f, op, r: f"{f} {op} {raw_quote(r)}",
        st.sampled_from(STRING_FIELDS + INT_FIELDS[:6]),
        st.sampled_from(["==", "!="]),
        regexes,
    ),
    st.builds(
        lambda f, fn, v, method: f"{f}.{fn}({quote(v)})" if method else f"{fn}({f}, {quote(v)})",
        st.sampled_from(STRING_FIELDS),
        st.sampled_from(["startsWith", "endsWith", "contains"]),
        strings,
        st.booleans(),
    ),
    st.builds(lambda f, r: f"{f}.matches({raw_quote(r)})", st.sampled_from(STRING_FIELDS), regexes),
    st.builds(lambda v: f"flags.contains({quote(v)})", st.sampled_from(FLAGS + ["x"])),
    st.builds(
        lambda f, op: f"{f} {op} nil",
        st.sampled_from(
            [
                "response",
                "response.status",
                "elapsed_ms",
                "src.name",
                "dst.pod.name",
                "src.service.namespace",
                "flags[0]",
                "flags[2]",
                "verdict",
                'verdicts["json-name"]',
                *HEADER_FIELDS[:6],
            ]
        ),
        st.sampled_from(["==", "!="]),
    ),
    st.sampled_from(
        [
            "response",
            "tls",
            "http",
            "grpc",
            "dns",
            "kafka",
            "request",
            'request.headers["x-id"]',
            "true",
            "false",
        ]
    ),
    st.builds(lambda op, t: f"timestamp {op} {t}", st.sampled_from(OPS), times),
    st.builds(
        lambda a, op, b: f"{a} {op} {b}",
        st.sampled_from(NUMBER_FIELDS[:7]),
        st.sampled_from(OPS),
        st.sampled_from(NUMBER_FIELDS[:7]),
    ),
    st.builds(lambda op: f"src.ip {op} dst.ip", st.sampled_from(OPS)),
    st.builds(
        lambda f, vs: f"{f} in [{', '.join(map(quote, vs))}]",
        st.sampled_from(["method", "protocol", "path"]),
        st.lists(strings, max_size=3),
    ),
)


def _combine(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.builds(
            lambda a, op, b: f"({a}) {op} ({b})",
            children,
            st.sampled_from(["and", "or", "&&", "||", "AND"]),
            children,
        ),
        st.builds(
            lambda a, op, b: f"{a} {op} {b}", children, st.sampled_from(["and", "or"]), children
        ),
        st.builds(lambda neg, a: f"{neg}({a})", st.sampled_from(["!", "not ", "! "]), children),
    )


filters = st.recursive(atoms, _combine, max_leaves=6)


# ---- the properties ---------------------------------------------------------------------

FIXED = random_calls(400)
FIXED_VIEWS = [call_view(c) for c in FIXED]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory):
    directory: Path = tmp_path_factory.mktemp("kfl-agree") / "store"
    with open_store(f"chdb://{directory}") as opened:
        yield opened


def sql_ids(store, text: str) -> set[str]:
    where, params = to_sql(parse(text), now_ns=NOW)
    return {row["id"] for row in read_calls(store, where_sql=where, params=params)}


def py_ids(text: str, views: list[dict]) -> set[str]:
    keep = to_predicate(parse(text), now_ns=NOW)
    return {view["id"] for view in views if keep(view)}


@pytest.fixture
def fixed_store(store):
    if {row["id"] for row in read_calls(store)} != {c.call_id for c in FIXED}:
        store.client.command("TRUNCATE TABLE calls")
        CallWriter(store).write(FIXED)
    return store


EXAMPLES = int(os.environ.get("KFL_EXAMPLES", "400"))  # raise it to search harder
_SETTINGS = dict(
    deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)


@settings(max_examples=EXAMPLES, **_SETTINGS)
@given(text=filters)
def test_sql_and_python_agree_on_a_fixed_batch(fixed_store, text: str) -> None:
    sql, py = sql_ids(fixed_store, text), py_ids(text, FIXED_VIEWS)
    assert sql == py, (
        f"{render(parse(text))}: only SQL {sorted(sql - py)[:5]}, "
        f"only Python {sorted(py - sql)[:5]}"
    )


def test_the_fixed_batch_is_varied(fixed_store) -> None:
    """Guard against a vacuous property: typical filters split the batch."""
    for text in [
        "response == nil",
        "response.status >= 400",
        "request.headers.host != nil",
        'flags.* == "gap"',
        "timestamp > minutes(-5)",
        'response.body == "AAH/"',
        'verdict == "fail"',
        "verdict == nil",
        'verdicts["slow"].startsWith("fail")',
    ]:
        hits = len(sql_ids(fixed_store, text))
        assert 0 < hits < len(FIXED), text


@settings(max_examples=EXAMPLES // 3, **_SETTINGS)
@given(batch=calls(), texts=st.lists(filters, min_size=1, max_size=4))
def test_sql_and_python_agree_on_generated_calls(
    store, batch: list[ApiCall], texts: list[str]
) -> None:
    store.client.command("TRUNCATE TABLE calls")
    CallWriter(store).write(batch)
    views = [call_view(c) for c in batch]
    for text in texts:
        assert sql_ids(store, text) == py_ids(text, views), render(parse(text))


@settings(max_examples=300, deadline=None)
@given(text=filters)
def test_canonical_text_parses_to_the_same_tree(text: str) -> None:
    query = parse(text)
    assert parse(render(query)) == query
