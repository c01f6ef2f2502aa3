"""KFL grammar: both spellings give the same tree, precedence, helpers, macros, aliases,
and errors that name line, column and what was expected."""

from __future__ import annotations

import calendar

import pytest

from schemas.errors import WiretideError
from schemas.regex import RegexError, compile_regex
from wiretide.kfl import KflError, check, describe_fields, explain, parse, render, to_sql
from wiretide.kfl.ast import (
    And,
    Bool,
    Compare,
    Const,
    Exists,
    Field,
    Method,
    Not,
    Now,
    Or,
    Query,
    Size,
    Type,
)
from wiretide.kfl.values import parse_duration, parse_time

S = 10**9


def tree(text: str):
    return parse(text).filter


def http(protocol: str = "http") -> Compare:
    return Compare("==", Field("protocol"), Const(protocol, Type.STRING))


def status(op: str, n: int) -> Compare:
    return Compare(op, Field("response.status"), Const(n, Type.NUMBER))


@pytest.mark.parametrize(
    ("kfl1", "kfl2"),
    [
        ("http and response.status >= 500", "http && status_code >= 500"),
        ("http or grpc", "http || grpc"),
        ("not http", "!http"),
        ("!(http and tls)", "not (http && tls)"),
        ('request.method == "GET"', "method == 'GET'"),
        ('request.path == "/x"', 'path == "/x"'),
        ("elapsedTime > 5", "elapsed_ms > 5"),
        ('request.headers["x-id"] == "1"', 'map_get(request.headers, "X-Id") == "1"'),
        ('request.path.startsWith("/a")', 'startsWith(path, "/a")'),
        ("timestamp > minutes(-5)", 'timestamp > now() - duration("5m")'),
        ("response.status == nil", "response.status == null"),
        ("src.ip == dst.ip", "src.pod.ip == dst.pod.ip"),
        ('namespace == "prod"', 'dst.namespace == "prod"'),
    ],
)
def test_both_spellings_read_the_same(kfl1: str, kfl2: str) -> None:
    assert parse(kfl1) == parse(kfl2)


def test_trees() -> None:
    assert tree("http and response.status >= 500") == And((http(), status(">=", 500)))
    assert tree("500 <= response.status") == status(">=", 500)
    assert tree("tls") == Compare("==", Field("tls"), Const(True, Type.BOOL))
    assert tree("response") == Exists(Field("response"))
    assert tree("response.status != nil") == Exists(Field("response.status"))
    assert tree("response.status == nil") == Not(Exists(Field("response.status")))
    assert tree("request.headers.Host") == Exists(Field("request.headers", key="host"))
    assert tree('flags[1] == "gap"') == Compare(
        "==", Field("flags", index=1), Const("gap", Type.STRING)
    )
    assert (
        tree('flags.* == "gap"')
        == tree('flags[*] == "gap"')
        == Compare("==", Field("flags", each=True), Const("gap", Type.STRING))
    )
    assert (
        tree("size(path) > 3")
        == tree("path.size() > 3")
        == Compare(">", Size(Field("request.path")), Const(3, Type.NUMBER))
    )
    assert tree('flags.contains("gap")') == Method(
        "contains", Field("flags"), Const("gap", Type.STRING)
    )
    assert (
        tree('path.matches("^/a")')
        == tree('matches(path, r"^/a")')
        == Method("matches", Field("request.path"), Const("^/a", Type.REGEX))
    )
    assert tree('method in ["GET", "PUT"]') == Or(
        (
            Compare("==", Field("request.method"), Const("GET", Type.STRING)),
            Compare("==", Field("request.method"), Const("PUT", Type.STRING)),
        )
    )
    assert tree("method in []") == Bool(False)
    assert tree("1 < 2") == Bool(True)
    assert tree('"abc".startsWith("b")') == Bool(False)
    assert tree('response.status == r"4.."') == Compare(
        "==", Field("response.status"), Const("4..", Type.REGEX)
    )


def test_precedence_and_binds_tighter_than_or_and_not_covers_a_comparison() -> None:
    a, b, c = (
        Compare("==", Field("request.method"), Const(m, Type.STRING)) for m in ("A", "B", "C")
    )
    assert tree('method == "A" or method == "B" and method == "C"') == Or((a, And((b, c))))
    assert tree('method == "A" and method == "B" or method == "C"') == Or((And((a, b)), c))
    assert tree('!method == "A"') == Not(a)
    assert tree('not method == "A" and method == "B"') == And((Not(a), b))
    assert tree("!!http") == http()  # negation is plain on both back ends
    assert tree("!!!http") == Not(http())
    assert tree("http and http and http") == And((http(), http(), http()))
    assert tree("http or (dns or tls) or (grpc)") == tree("http or dns or tls or grpc")
    tls = Compare("==", Field("tls"), Const(True, Type.BOOL))
    assert tree("http and (dns or tls)") == And((http(), Or((http("dns"), tls))))


def test_time_helpers() -> None:
    base = calendar.timegm((2006, 1, 2, 15, 4, 5, 0, 0, 0)) * S
    t = tree('timestamp > datetime("1/2/2006, 3:04:05 PM")')
    assert t == Compare(">", Field("timestamp"), Const(base, Type.TIME))
    assert tree('timestamp > timestamp("2006-01-02T15:04:05Z")') == t
    assert tree('timestamp > "2006-01-02T17:04:05+02:00"') == t
    assert tree(f"timestamp > {base // 10**6}") == t  # Mizu: Unix milliseconds
    assert tree("timestamp > timestamp(1136214245)") == t  # Unix seconds
    assert tree("timestamp > minutes(-5)") == Compare(">", Field("timestamp"), Now(-300 * S))
    assert tree("timestamp > seconds(30)").right == Now(30 * S)
    assert tree("timestamp > hours(-1.5)").right == Now(-5400 * S)
    assert tree("timestamp > days(-1)").right == Now(-86400 * S)
    assert tree("timestamp > now()").right == Now(0)
    assert tree('timestamp > now() - duration("1h30m") + duration("10s")').right == Now(-5390 * S)
    assert tree('timestamp < timestamp("2006-01-02") + duration("1d")').right == Const(
        calendar.timegm((2006, 1, 3, 0, 0, 0, 0, 0, 0)) * S, Type.TIME
    )
    assert tree('elapsed_ms > duration("1.5s")').right == Const(1500.0, Type.NUMBER)
    assert tree('elapsed_time > duration("2ms")').right == Const(2000.0, Type.NUMBER)


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("5m", 300 * S),
        ("1h30m", 5400 * S),
        ("-1.5h", -5400 * S),
        ("300ms", 300 * 10**6),
        ("1us", 1000),
        ("2µs", 2000),
        ("7ns", 7),
        ("0", 0),
        ("1d", 86400 * S),
        (".5s", S // 2),
    ],
)
def test_durations(text: str, ns: int) -> None:
    assert parse_duration(text) == ns


@pytest.mark.parametrize("text", ["", "5", "m", "5x", "1h-5m", "--5m"])
def test_bad_durations(text: str) -> None:
    assert parse_duration(text) is None


def test_times() -> None:
    assert parse_time("1970-01-01T00:00:01.5Z") == S + S // 2
    assert parse_time("1970-01-01T00:00:00.000000001Z") == 1
    assert parse_time("1970-01-01 01:00:00+01:00") == 0
    assert parse_time("1/1/1970, 12:00:01 AM") == S
    assert parse_time("2026-02-30") is None
    assert parse_time("yesterday") is None


def test_limit() -> None:
    assert parse("http and limit(100)") == Query(http(), 100)
    assert parse("limit(5) and http") == Query(http(), 5)
    assert parse("limit(5)") == Query(None, 5)
    assert parse("(http and limit(5)) and tls").limit == 5
    assert parse("") == Query(None, None)
    assert parse("  \n ") == Query(None, None)


def test_render_is_canonical_and_parses_back() -> None:
    q = parse("(http && status_code >= 500 || !path.startsWith('/h')) and limit(7)")
    text = render(q)
    assert text == (
        '(((protocol == "http") and (response.status >= 500)) or '
        '!(request.path.startsWith("/h"))) and limit(7)'
    )
    assert parse(text) == q
    for source in [
        "timestamp > minutes(-5)",
        "response.body == r'a\"b'",
        'request.headers.* == "x\\ny"',
        "elapsed_ms > 0.25",
        "response == nil",
        'path == r"a\nb"',
        "size(flags) >= 2",
        'timestamp > "2026-05-01"',
    ]:
        assert parse(render(parse(source))) == parse(source), source


def test_explain_shows_reading_limit_and_sql() -> None:
    text = explain(parse("http and status_code >= 500 and limit(10)"), now_ns=0)
    assert text.splitlines() == [
        'filter: ((protocol == "http") and (response.status >= 500))',
        "limit:  10 (newest calls)",
        "sql:    (protocol = {kfl0:String} AND (NOT (response_ts_ns = 0) AND "
        "status >= {kfl1:Int64}))",
        "params: kfl0='http', kfl1=500",
    ]
    assert check("tls").startswith("filter: (tls == true)")
    assert "request.method" in describe_fields()


@pytest.mark.parametrize(
    ("text", "where", "reason"),
    [
        ("request.path ==", (1, 16), "expected a value after '==', found end of input"),
        ("http and", (1, 9), "expected a value after 'and', found end of input"),
        ("http &&", (1, 8), "expected a value after '&&', found end of input"),
        ("(http", (1, 6), "expected ')' to close the '(' at 1:1, found end of input"),
        ("http)", (1, 5), "unmatched ')'"),
        ("http tls", (1, 6), "unexpected 'tls' after a complete condition"),
        ('path == "abc', (1, 9), "unterminated string"),
        ('path == r"abc', (1, 9), "unterminated regex"),
        ('path = "x"', (1, 6), "'==' compares"),
        ("http & tls", (1, 6), "did you mean '&&'"),
        ("path @ 1", (1, 6), "unexpected character '@'"),
        ("http and\n  status_code >=\n", (3, 1), "expected a value after '>=', found end"),
        ('http and\n\tstatus_code == "500"', (2, 17), "response.status is a number"),
        ("status_code == 1 == 1", (1, 18), "comparisons do not chain"),
        ('request.methd == "GET"', (1, 1), "did you mean request.method?"),
        ("htpp", (1, 1), "did you mean http?"),
        ("protocol == http", (1, 13), "'http' is a protocol, not a value; quote it"),
        ('request.headers == "x"', (1, 1), "request.headers is a map"),
        ('flags == "gap"', (1, 1), "flags is a list"),
        ("request.path.foo", (1, 1), "unknown field"),
        ("path.startsWith(1)", (1, 17), "startsWith() takes a string"),
        ("startsWith(path)", (1, 1), "takes a field and one argument"),
        ('path.frobnicate("x")', (1, 6), "unknown function frobnicate()"),
        ("http or limit(3)", (1, 9), "limit(n) must be joined"),
        ("http and limit(3) and limit(4)", (1, 23), "more than one limit()"),
        ('limit("3")', (1, 1), "limit() takes one whole number"),
        ("tls < true", (1, 5), "booleans only go with == or !="),
        ('path < r"x"', (1, 6), "a regex only goes with == or !="),
        ('path == r"(?=x)"', (1, 9), "lookaround"),
        ('path == r"(a"', (1, 9), "bad regex"),
        ('path == r"\\1"', (1, 9), "backreferences"),
        ('path == r"[[:alpha:]]"', (1, 9), "[[:class:]]"),
        ('elapsed_ms == r"1"', (1, 12), "a regex matches text or whole numbers"),
        ('timestamp > duration("5m")', (1, 13), "timestamp is a time"),
        ('timestamp > "soon"', (1, 13), "cannot read 'soon' as a time"),
        ('timestamp > duration("5 minutes")', (1, 22), "cannot read '5 minutes' as a duration"),
        ('path == "\\q"', (1, 10), "unknown escape \\q"),
        ("status_code > 99999999999999999999", (1, 15), "out of range"),
        ("5", (1, 1), "expected a condition, found number 5"),
        ("size(tls) > 1", (1, 1), "size() takes text, a map or a list"),
        ("path + 1 == 2", (1, 6), "works on constants only"),
        ("response.status == nil == nil", (1, 24), "comparisons do not chain"),
        ("response.status < nil", (1, 17), "nil only goes with == or !="),
        ("request.headers.* == nil", (1, 19), "nil only goes with"),
        ("request.headers.*", (1, 1), "needs a condition"),
        ('method in "GET"', (1, 11), "'in' needs a [list]"),
        ("src.port == dst.ip", (1, 10), "cannot compare src.port (a number) with dst.ip (text)"),
        ("[1, 2]", (1, 1), "a [list] only goes after 'in'"),
        ("size(path)", (1, 1), "size() gives a value, not a condition"),
        ('flags["x"] == "y"', (1, 7), "flags takes an index"),
        ('request.headers[0] == "y"', (1, 17), "request.headers takes a header name"),
        ("path.", (1, 6), "expected a field name or '*' after '.'"),
        ("path[", (1, 6), "expected a \"key\", an index or '*' inside [ ]"),
        ("3abc", (1, 1), "a number cannot run into a name"),
    ],
)
def test_errors_name_line_column_and_what_was_expected(
    text: str, where: tuple[int, int], reason: str
) -> None:
    with pytest.raises(KflError) as caught:
        parse(text)
    err = caught.value
    assert isinstance(err, WiretideError)
    assert reason in err.reason, err.reason
    assert (err.line, err.column) == where, str(err)
    assert str(err) == f"{err.line}:{err.column}: {err.reason}"
    assert "\n" not in str(err)


def test_error_pointer_for_the_cli() -> None:
    text = "http and\n  status_code == "
    with pytest.raises(KflError) as caught:
        parse(text)
    assert caught.value.pointer(text) == "  status_code == \n                 ^"


@pytest.mark.parametrize(
    ("pattern", "text", "found"),
    [
        ("a$", "a\n", False),  # `$` is the end of the text, as in ClickHouse
        ("(?m)a$", "a\nb", True),
        ("a.b", "a\nb", True),  # `.` takes a newline, as in ClickHouse
        ("a(?i)b|c", "C", True),
        (r"\d", "\u0663", False),  # RE2's \d \w \s \b are ASCII
        (r"x\b", "x\u00e9", True),
        ("x{,2}", "x{,2}", True),  # a `{` that starts no repetition is itself
        ("(?P<n>x)(?<m>y)", "xy", True),
        ("^/api", "/v1/api", False),
        ("api", "/v1/api", True),  # unanchored: a search
    ],
)
def test_regexes_read_as_clickhouse_reads_them(pattern: str, text: str, found: bool) -> None:
    assert (compile_regex(pattern).search(text) is not None) is found


@pytest.mark.parametrize(
    "re2",
    [
        "(?=a)",
        "(?!a)",
        "(?<=a)",
        "(?<!a)",
        r"(a)\1",
        r"\p{L}",
        "[[:digit:]]",
        r"\Qa\E",
        "a*+",
        "(?U)a*",
        "(?>a)",
        r"[\D]",
        r"a\Z",
        "a{1001}",
    ],
)
def test_regexes_one_side_lacks_are_refused(re2: str) -> None:
    with pytest.raises(RegexError):
        compile_regex(re2)


def test_fields_only_from_the_fixed_map() -> None:
    where, params = to_sql(parse('request.headers["x`y"] == "1" and path == "p"'))
    assert "x`y" not in where and params["kfl0"] == "x`y"
    assert not isinstance(parse("http").filter, Bool)


def test_a_repeated_non_ascii_character_must_be_grouped() -> None:
    """ClickHouse's substring pre-filter reads `Éé?` as requiring `é`; Python's `re` does
    not. Refusing the form (with the fix in the message) keeps both back ends equal."""
    from wiretide.kfl import KflError, parse

    with pytest.raises(KflError, match=r"1:14: .*\(é\)\?"):
        parse('path.matches(r"/Éé?")')
    parse('path.matches(r"/É(é)?")')


@pytest.mark.parametrize("text", ["response.status == 2²", "response.status == ٣٠٠"])
def test_only_ascii_digits_make_numbers(text):
    """Found by schemathesis through the hub: a superscript digit crashed the lexer."""
    with pytest.raises(KflError, match="unexpected character"):
        parse(text)
