"""The redact stage: default Mizu field list, headers / cookies / query / JSON / form / XML /
text bodies, the YAML policy file, and Hypothesis properties (valid JSON out, idempotent,
never raises)."""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.records import ApiCall
from streams import redact as redact_module
from streams.redact import DEFAULT_FIELDS, RedactionPolicy, normalize, redact

R = "[REDACTED]"
GOLDEN_DIR = Path(__file__).resolve().parents[1] / "golden" / "http"


def make(**kw) -> ApiCall:
    base = dict(
        call_id="c",
        protocol="http",
        ts_ns=1,
        src_ip="10.0.0.1",
        src_port=1,
        dst_ip="10.0.0.2",
        dst_port=80,
        flow_id="f",
        method="GET",
        path="/",
    )
    return ApiCall(**{**base, **kw})


def body_call(ctype: str | None, body: bytes, side: str = "response") -> ApiCall:
    headers = (("Content-Type", ctype),) if ctype else ()
    return make(**{f"{side}_headers": headers, f"{side}_body": body})


def test_default_fields_follow_reference():
    assert DEFAULT_FIELDS == (
        "token", "authorization", "authentication", "cookie", "userid", "password", "username",
        "user", "key", "passcode", "pass", "auth", "authtoken", "jwt", "bearer", "clientid",
        "clientsecret", "redirecturi", "phonenumber", "zip", "zipcode", "address", "country",
        "firstname", "lastname", "middlename", "fname", "lname", "birthdate",
    )  # fmt: skip
    assert RedactionPolicy.default() == RedactionPolicy()
    assert RedactionPolicy.default().replacement == R


@pytest.mark.parametrize(
    ("name", "hit"),
    [
        ("Authorization", True), ("X-Api-Key", True), ("x_auth_token", True), ("User-Agent", True),
        ("Proxy-Authorization", True), ("Set-Cookie", True), ("Client Secret", True),
        ("Content-Type", False), ("Accept", False), ("Host", False), ("Keep-Alive", False),
        ("Zip", True), ("First_Name", True), ("birth-date", True), ("Country-Code", True),
    ],
)  # fmt: skip
def test_name_matching(name, hit):
    assert RedactionPolicy.default().matches(name) is hit


def test_headers_and_cookies_follow_the_list_literally():
    call = make(
        request_headers=(
            ("Authorization", "Bearer abc"),
            ("Accept", "*/*"),
            ("Cookie", "session=1; theme=dark"),
            ("User-Agent", "curl/8"),
        ),
        response_headers=(("Set-Cookie", "sid=1; Path=/"), ("Server", "nginx")),
    )
    out = redact(call)
    assert out.request_headers == (
        ("Authorization", R),
        ("Accept", "*/*"),
        ("Cookie", R),
        ("User-Agent", R),
    )
    assert out.response_headers == (("Set-Cookie", R), ("Server", "nginx"))
    assert out.call_id == call.call_id and out.method == call.method


def test_cookies_per_name_when_the_header_name_does_not_match():
    policy = RedactionPolicy(fields=("session", "token"))
    call = make(
        request_headers=(("Cookie", "session=1; theme=dark;token=x"),),
        response_headers=(
            ("Set-Cookie", "session=abc; Path=/; HttpOnly"),
            ("Set-Cookie", "theme=dark; Path=/"),
        ),
    )
    out = redact(call, policy)
    assert out.request_headers == (("Cookie", f"session={R}; theme=dark;token={R}"),)
    assert out.response_headers == (
        ("Set-Cookie", f"session={R}; Path=/; HttpOnly"),
        ("Set-Cookie", "theme=dark; Path=/"),
    )


def test_query_parameters():
    out = redact(make(query="page=2&user=bob&pass%77ord=x&first+name=A&flag&q=user"))
    assert out.query == f"page=2&user={R}&pass%77ord={R}&first+name={R}&flag&q=user"
    same = make(query="page=2&q=hello")
    assert redact(same) is same


def test_json_bodies_any_depth():
    doc = {
        "name": "x",
        "password": "p",
        "items": [{"token": 1, "ok": [1, {"apiKey": None}]}],
        "address": {"street": "s"},
        "n": 1.5,
        "deep": {"a": {"b": {"UserId": 7}}},
        "é": "ü",
    }
    out = redact(body_call("application/json; charset=utf-8", json.dumps(doc).encode()))
    assert json.loads(out.response_body) == {
        "name": "x",
        "password": R,
        "items": [{"token": R, "ok": [1, {"apiKey": R}]}],
        "address": R,
        "n": 1.5,
        "deep": {"a": {"b": {"UserId": R}}},
        "é": "ü",
    }
    assert "é" in out.response_body.decode()  # UTF-8 kept readable
    top_list = redact(body_call("application/vnd.api+json", b'[{"jwt": "x"}, 3]', "request"))
    assert json.loads(top_list.request_body) == [{"jwt": R}, 3]


def test_json_that_does_not_parse_is_redacted_by_pairs():
    truncated = b'{"user": "bob", "note": "a", "token": "abc\\"def", "n": 12, "password": "cut he'
    out = redact(body_call("application/json", truncated))
    assert out.response_body == (
        b'{"user": "[REDACTED]", "note": "a", "token": "[REDACTED]", '
        b'"n": 12, "password": "[REDACTED]"'
    )
    odd = redact(body_call("application/json", b'{"a": NaN, "b": 1e999, "pass": 1}'))
    assert json.loads(odd.response_body) == {"a": "NaN", "b": "1e999", "pass": R}


def test_form_xml_and_text_bodies():
    form = redact(
        body_call("application/x-www-form-urlencoded", b"username=bob&x=1&password=p", "request")
    )
    assert form.request_body == f"username={R}&x=1&password={R}".encode()
    xml = (
        b'<?xml version="1.0"?><r><user><name>bob</name><id>1</id></user><ns:Password a="1">x'
        b"</ns:Password><token/><item>keep</item><Address>\n <street>s</street>\n</Address></r>"
    )
    out = redact(body_call("application/soap+xml", xml))
    assert out.response_body == (
        b'<?xml version="1.0"?><r><user><name>[REDACTED]</name><id>[REDACTED]</id></user>'
        b'<ns:Password a="[REDACTED]">[REDACTED]</ns:Password><token/><item>keep</item>'
        b"<Address>\n <street>[REDACTED]</street>\n</Address></r>"
    )
    cut = redact(body_call("text/xml", b"<a><password>secr"))
    assert cut.response_body == b"<a><password>[REDACTED]"
    policy = RedactionPolicy(patterns=(r"\b\d{3}-\d{2}-\d{4}\b", r"sk_live_\w+"))
    text = redact(body_call("text/plain", b"ssn 123-45-6789 key sk_live_abc ok"), policy)
    assert text.response_body == b"ssn [REDACTED] key [REDACTED] ok"
    in_json = redact(body_call("application/json", b'{"note": "ssn 123-45-6789"}'), policy)
    assert json.loads(in_json.response_body) == {"note": "ssn [REDACTED]"}
    prose = body_call("text/plain", b"the password is in the vault")
    assert redact(prose) is prose  # prose: only the user's regexes apply


@pytest.mark.parametrize(
    "ctype",
    [
        None,
        "application/octet-stream",
        "image/png",
        "application/grpc",
        "multipart/form-data; boundary=x",
    ],
)
@pytest.mark.parametrize(
    "body",
    [
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR password=p",
        b"\x00\x00\x00\x00\x05\n\x03key\x12\x01p",  # a gRPC frame of protobuf
        b"PK\x03\x04\x14\x00password=p",
    ],
)
def test_binary_bodies_are_left_alone(ctype, body):
    call = body_call(ctype, body)
    policy = RedactionPolicy(patterns=("p",))
    assert redact(call, policy).response_body == call.response_body


def test_hostile_xml_and_json_stay_fast():
    hostile = b"<a x='1'>" * 20000 + b"<password>" + b"<b" * 5000
    t0 = time.process_time()  # CPU seconds: a busy machine does not stretch them
    redact(body_call("application/xml", hostile))
    redact(body_call("application/json", b'{"a":' * 20000 + b'"user": "x"'))
    redact(body_call("application/json", b"[" * 100000))
    assert time.process_time() - t0 < 2.0  # quadratic scanning would take minutes


# ------------------------------------------------------------------ real traffic


def test_redacts_recorded_traffic():
    spec = importlib.util.spec_from_file_location(
        "wiretide_http_record_r", GOLDEN_DIR / "record.py"
    )
    rec_mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = rec_mod
    spec.loader.exec_module(rec_mod)
    doc = json.loads((GOLDEN_DIR / "keepalive.json").read_text())
    rec = rec_mod.Recording.from_json(doc["connections"][0])
    calls = [redact(c) for c in rec_mod.feed(rec) if isinstance(c, ApiCall)]
    first, second, _, post = calls[:4]
    assert dict(first.request_headers)["Authorization"] == R
    assert first.query == f"user={R}&limit=10"
    assert json.loads(first.response_body) == {
        "user": R,
        "token": R,
        "items": [1, 2, 3],
        "note": "héllo",
    }
    assert dict(second.request_headers)["Cookie"] == R
    assert json.loads(post.request_body) == {"password": R, "n": 1}
    for c in calls:
        assert redact(c) == c  # idempotent


# --------------------------------------------------------------------- policy file


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "redact.yaml"
    p.write_text(text)
    return p


def test_policy_file(tmp_path):
    p = RedactionPolicy.from_yaml(
        write(tmp_path, "fields: [SSN, credit-card]\npatterns: ['\\d{16}']\n")
    )
    assert p.fields == (*DEFAULT_FIELDS, "ssn", "creditcard")
    assert p.matches("X-Credit_Card") and p.matches("Authorization")
    assert (
        redact(body_call("text/plain", b"card 1234567812345678"), p).response_body
        == b"card [REDACTED]"
    )
    only = RedactionPolicy.from_yaml(
        write(tmp_path, "replace_defaults: true\nfields: [ssn]\nreplacement: '***'\n")
    )
    assert only.fields == ("ssn",) and not only.matches("Authorization")
    assert redact(make(query="ssn=1&user=2"), only).query == "ssn=***&user=2"
    assert RedactionPolicy.from_yaml(write(tmp_path, "")) == RedactionPolicy.default()
    assert RedactionPolicy.from_yaml(write(tmp_path, "# just a comment\n")) == RedactionPolicy()


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("fields: [a, b\npatterns: []\n", 2, "invalid YAML"),
        ("fields: [a]\npatterns:\n  - 'ok'\n  - '(unclosed'\n", 4, "bad regex '(unclosed'"),
        ("fields: [a]\ncolour: blue\n", 2, "unknown key 'colour'"),
        ("fields: token\n", 1, "fields must be a list"),
        ("replace_defaults: maybe\n", 1, "true or false"),
        ("- a\n- b\n", 1, "expected a mapping"),
        ("fields:\n  - a\n  - [b]\n", 3, "list of strings"),
    ],
)
def test_policy_file_errors_name_file_and_line(tmp_path, text, line, words):
    path = write(tmp_path, text)
    with pytest.raises(ValueError) as err:
        RedactionPolicy.from_yaml(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}:{line}: ") and words in msg and "\n" not in msg


def test_policy_file_missing(tmp_path):
    with pytest.raises(ValueError, match="cannot read"):
        RedactionPolicy.from_yaml(tmp_path / "nope.yaml")
    with pytest.raises(ValueError, match="bad redaction regex"):
        RedactionPolicy(patterns=("[",))


# ---------------------------------------------------------------------- Hypothesis

NAMES = st.one_of(
    st.sampled_from(
        [
            "id",
            "name",
            "items",
            "Password",
            "user_id",
            "api-key",
            "note",
            "zip",
            "AUTH",
            "value",
            "data",
            "first name",
            "ok",
            "passcode",
            "tags",
        ]
    ),
    st.text(max_size=8),
)
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(NAMES, kids, max_size=5),
    max_leaves=25,
)


def check_redacted(original, redacted, policy: RedactionPolicy) -> None:
    if isinstance(original, dict):
        assert list(redacted) == list(original)
        for k, v in original.items():
            if policy.matches(k):
                assert redacted[k] == R
            else:
                check_redacted(v, redacted[k], policy)
    elif isinstance(original, list):
        assert len(redacted) == len(original)
        for a, b in zip(original, redacted, strict=True):
            check_redacted(a, b, policy)
    else:
        assert redacted == original


@settings(max_examples=300, deadline=None)
@given(doc=JSON_VALUES)
def test_json_redaction_keeps_valid_json_and_everything_else(doc):
    policy = RedactionPolicy.default()
    call = body_call("application/json", json.dumps(doc).encode())
    out = redact(call, policy)
    check_redacted(doc, json.loads(out.response_body), policy)
    assert redact(out, policy) == out


@settings(max_examples=300, deadline=None)
@given(name=st.text(max_size=20), fields=st.lists(st.text(min_size=1, max_size=6), max_size=5))
def test_matching_is_substring_of_normalized_name(name, fields):
    policy = RedactionPolicy(fields=tuple(fields))
    expected = any(f and f in normalize(name) for f in (normalize(x) for x in fields))
    assert policy.matches(name) is expected


@settings(max_examples=300, deadline=None)
@given(
    ctype=st.sampled_from(
        [
            "application/json",
            "application/xml",
            "text/html",
            "application/x-www-form-urlencoded",
            "image/png",
            "text/plain",
        ]
    ),
    body=st.one_of(
        st.binary(max_size=300),
        st.lists(
            st.sampled_from(
                [
                    '{"',
                    '"user"',
                    ":",
                    '"x"',
                    "<user>",
                    "</user>",
                    "<a b='1'>",
                    "&",
                    "password=",
                    "=",
                    "1",
                    "[",
                    "]",
                    "}",
                    ",",
                    "\\",
                    "\xff",
                ]
            ),
            max_size=40,
        ).map(lambda xs: "".join(xs).encode("utf-8", "surrogateescape")),
    ),
    query=st.text(max_size=40),
    headers=st.lists(st.tuples(NAMES, st.text(max_size=20)), max_size=5),
)
def test_anything_is_redacted_without_error_and_idempotently(ctype, body, query, headers):
    policy = RedactionPolicy(patterns=(r"\d+",))
    call = make(query=query, request_headers=(("Content-Type", ctype), *headers), request_body=body)
    out = redact(call, policy)
    assert redact(out, policy) == out
    if ctype == "image/png":  # binary, whatever follows the signature: left alone
        png = b"\x89PNG\r\n\x1a\n" + body
        binary = make(request_headers=(("Content-Type", ctype),), request_body=png)
        assert redact(binary, policy) is binary
    if ctype == "application/json":
        try:
            json.loads(body)
        except ValueError:
            pass
        else:
            json.loads(out.request_body)  # valid JSON in, valid JSON out


# ------------------------------------------------------- shortcuts change nothing

JSON_TEXT = st.one_of(
    JSON_VALUES.map(lambda d: json.dumps(d).encode()),
    JSON_VALUES.map(lambda d: json.dumps(d, ensure_ascii=False).encode()),
    JSON_VALUES.map(lambda d: json.dumps(d).encode("utf-16")),
    JSON_VALUES.map(lambda d: json.dumps(d).encode("utf-16-le")),
    st.lists(
        st.sampled_from(['{"', '"', "User", "-", "_", " ", "Name", "id", "\\u0075ser", ":", "1",
                         ",", "}", "[", "]", "ZIP", "key", "\x00", "X.y", "ΑΣ", "ς"]),
        max_size=30,
    ).map(lambda xs: "".join(xs).encode()),
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    body=JSON_TEXT,
    fields=st.sampled_from(
        [(), ("user",), ("na me",), ("ké",), ("x.y",), ("ας",), ("Σ",), DEFAULT_FIELDS]
    ),
)
def test_json_bodies_without_a_possible_key_are_skipped_exactly(body, fields):
    """The C-level pre-check that skips parsing JSON no key of which can match gives the
    same result as parsing every body."""
    quick = RedactionPolicy(fields=fields)
    slow = RedactionPolicy(fields=fields)
    object.__setattr__(slow, "_spellings", (b"",))  # "spelled" in every body: always parse
    call = body_call("application/json", body)
    out = redact(call, quick)
    assert out == redact(call, slow)
    assert (out is call) == (redact(call, slow) is call)


def test_header_and_query_verdicts_are_cached_per_policy():
    call = make(
        query="user=1&a%75th=2&x=3",
        request_headers=(("X-User", "a"), ("Cookie", "user=1; b=2"), ("content-type", "text/x")),
    )
    narrow = RedactionPolicy(fields=("x",))
    wide = RedactionPolicy.default()
    for _ in range(2):  # the second time from the caches
        assert redact(call, narrow).request_headers == (
            ("X-User", R),
            ("Cookie", "user=1; b=2"),
            ("content-type", "text/x"),
        )
        assert redact(call, narrow).query == f"user=1&a%75th=2&x={R}"
        assert redact(call, wide).request_headers == (
            ("X-User", R),
            ("Cookie", R),
            ("content-type", "text/x"),
        )
        assert redact(call, wide).query == f"user={R}&a%75th={R}&x=3"


def test_other_protocols_keep_their_own_fields_and_redact_declared_documents():
    """Kafka's api_key/client_id, PostgreSQL's user and DNS's authority are the protocol's
    field names, not user data; a message body is redacted by its declared type."""
    from schemas.records import ApiCall

    base = dict(call_id="c", ts_ns=1, src_ip="a", src_port=1, dst_ip="b", dst_port=2, flow_id="f")
    kafka = ApiCall(protocol="kafka", request_headers=(("api_key", "3"), ("client_id", "svc")),
                    **base)  # fmt: skip
    assert redact(kafka) is kafka
    dns = ApiCall(protocol="dns", response_body=b'{"answers":[],"authority":[]}', **base)
    assert redact(dns) is dns
    amqp = ApiCall(
        protocol="amqp",
        request_headers=(("content_type", "application/json"), ("routing_key", "orders")),
        request_body=b'{"order": 7, "password": "hunter2"}',
        **base,
    )
    out = redact(amqp)
    assert b"hunter2" not in out.request_body and b'"order"' in out.request_body
    assert out.request_headers == amqp.request_headers
    mongo = ApiCall(protocol="mongodb", request_body=b'{"insert":"users","token":"t0p"}', **base)
    assert b"t0p" not in redact(mongo).request_body


def test_repeated_headers_are_redacted_alike_and_unhashable_ones_too():
    """Headers met before come from the policy's memory; a list (not hashable) is still
    redacted, each time."""
    policy = RedactionPolicy.default()
    headers = (("Authorization", "Bearer abc"), ("Content-Type", "application/json"))
    first = redact(make(request_headers=headers), policy)
    again = redact(make(request_headers=tuple(list(headers))), policy)
    assert first.request_headers == (("Authorization", R), ("Content-Type", "application/json"))
    assert again.request_headers == first.request_headers
    listed = redact(make(request_headers=[("Authorization", "Bearer abc")]), policy)
    assert listed.request_headers == (("Authorization", R),)


def test_repeated_bodies_are_redacted_alike_whatever_their_declared_type():
    """A body met before comes from the policy's memory, keyed by its bytes and declared
    type: the same bytes declared otherwise are redacted as that type says."""
    policy = RedactionPolicy.default()
    # multipart behind a preamble: only its declared type says so
    parts = b'hi\r\n--b\r\nContent-Disposition: form-data; name="user"\r\n\r\nbob\r\n--b--\r\n'
    for _ in range(2):  # the second time from memory
        out = redact(body_call("application/json", b'{"user":"bob","id":7}'), policy)
        assert out.response_body == b'{"user":"[REDACTED]","id":7}'
        assert redact(body_call("text/plain", parts), policy).response_body == parts
        declared = redact(body_call("multipart/form-data; boundary=b", parts), policy)
        assert b"bob" not in declared.response_body
    big = b'{"user":"bob","pad":"' + b"x" * 9000 + b'"}'  # too long to be remembered
    for _ in range(2):
        assert b"bob" not in redact(body_call("application/json", big), policy).response_body
    assert len(policy._body_memo) == 3


# JSON that orjson reads differently from json.loads, or not at all.
ODD_JSON = st.sampled_from(
    [
        b'{"user":1,"id":18446744073709551616}',  # beyond 64 bits: orjson makes it a float
        b'{"user":1,"n":-9223372036854775809}',
        b'{"user":1,"f":1e16,"g":0.1,"h":-0.0}',
        b'{"user":1,"f":1e400}',
        b'{"user":1,"x":NaN}',
        b'\xef\xbb\xbf{"user":1}',  # a BOM
        b'{"user":1,"s":"\xed\xa0\x80"}',  # a surrogate in UTF-8
        b'{"user":1,"user":2,"User":[1,{"token":3}]}',  # duplicate keys
        b'{"user":"[REDACTED]","a":[[[{"api_key":"[REDACTED]"}]]]}',  # nothing to change
        b'{"user":"\\n\\t\\u0001\\"\\\\/","k":"\\u00e9\\u2028"}',
        b' {"user" : 1 , "\xc3\xa9" : [ true , false , null ] }\n',
        b"[" * 600 + b'{"user":1}' + b"]" * 600,
        b'{"user":1}{"user":2}',  # two documents
    ]
)


@settings(max_examples=300, deadline=None)
@given(body=JSON_TEXT | ODD_JSON, fields=st.sampled_from([("user",), DEFAULT_FIELDS]))
def test_json_bodies_read_by_orjson_come_out_as_the_json_module_makes_them(body, fields):
    """orjson parses and prints the usual JSON body; the bytes are those of the json
    module's path, whatever the body holds."""
    policy = RedactionPolicy(fields=fields)
    call = body_call("application/json", body)
    fast = redact(call, policy)
    orjson_path = redact_module._json_fast
    redact_module._json_fast = lambda body, policy: redact_module._SLOW
    try:
        assert redact(call, policy) == fast
    finally:
        redact_module._json_fast = orjson_path
