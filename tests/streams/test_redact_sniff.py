"""Redaction whatever the Content-Type says (issue 11, "never stop, never leak"): JSON, form,
multipart and XML bodies are recognised by their bytes, also when cut short by the body
cap, and user patterns run on RE2.

The property tests build calls in which only secrets contain digits: every value of a
default field is a run of digits, every other value is letters. So "no digit survives
anywhere in the redacted call" means no secret survived, whatever the body's format,
content type, nesting or truncation; and every letters-only value outside a secret must
still be there."""

from __future__ import annotations

import gzip
import json
import re
import zlib
from urllib.parse import quote_plus

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.records import ACK, SYN, ApiCall
from streams.redact import DEFAULT_FIELDS, RedactionPolicy, redact
from tests.streams.test_pipeline_flows import run, tcp
from tests.streams.test_redact import R, body_call, make, write

POLICY = RedactionPolicy.default()
BOUNDARY = "WiretideBoundaryXyZ"
SAFE_NAMES = (
    "id", "name", "items", "note", "data", "value", "title", "amount", "page", "lang",
    "color", "size", "kind", "status", "label", "comment", "city", "email", "role",
)  # fmt: skip
# Types a client may (wrongly) send, or none at all.
CONTENT_TYPES = (
    None, "application/json", "application/x-www-form-urlencoded", "text/plain", "text/html",
    "application/xml", f"multipart/form-data; boundary={BOUNDARY}",
    "multipart/form-data; boundary=SomethingElse", "application/octet-stream", "image/png",
    "application/grpc", "application/json; charset=utf-8",
)  # fmt: skip
DIGIT = re.compile(rb"[0-9]")


def test_safe_names_are_safe():
    assert not any(POLICY.matches(n) for n in SAFE_NAMES)


# ------------------------------------------------------------------ strategies


@st.composite
def secret_names(draw, separators: tuple[str, ...] = ("", "-", "_", " ")) -> str:
    """A default field spelled as clients do: any case, separators inside, a prefix or
    suffix around it."""
    field = draw(st.sampled_from(DEFAULT_FIELDS))
    cuts = (
        sorted(draw(st.sets(st.integers(1, len(field) - 1), max_size=2))) if len(field) > 1 else []
    )
    pieces = [field[a:b] for a, b in zip([0, *cuts], [*cuts, len(field)], strict=True)]
    cased = [draw(st.sampled_from((str.lower, str.upper, str.title)))(p) for p in pieces]
    name = "".join(p + draw(st.sampled_from(separators)) for p in cased[:-1]) + cased[-1]
    prefix = draw(st.sampled_from(("", "x", "my", "new")))
    suffix = draw(st.sampled_from(("", "id", "value", "hash")))
    sep = draw(st.sampled_from(tuple(s for s in separators if s) or ("",)))
    return (prefix + sep if prefix else "") + name + (sep + suffix if suffix else "")


SECRETS = st.from_regex(r"[0-9]{1,12}", fullmatch=True)
SAFE_VALUES = st.from_regex(r"ok[a-z]{3,8}", fullmatch=True)


def names(separators: tuple[str, ...] = ("", "-", "_", " ")) -> st.SearchStrategy:
    """(name, is it a field's) pairs."""
    return st.one_of(
        st.tuples(secret_names(separators), st.just(True)),
        st.tuples(st.sampled_from(SAFE_NAMES), st.just(False)),
    )


@st.composite
def trees(draw, secret: bool = False, depth: int = 0, separators=("", "-", "_", " ")):
    """A document: dicts of (name -> tree), lists, and leaves; everything under a field's
    name is secret."""
    kind = draw(st.sampled_from(("leaf", "leaf", "dict", "list") if depth < 3 else ("leaf",)))
    if kind == "leaf":
        if secret:
            return draw(st.one_of(SECRETS, SECRETS.map(int)))
        return draw(SAFE_VALUES)
    if kind == "list":
        return draw(st.lists(trees(secret, depth + 1, separators), max_size=3))
    out = {}
    for name, is_field in draw(st.lists(names(separators), max_size=4)):
        out[name] = draw(trees(secret or is_field, depth + 1, separators))
    return out


def kept(tree, secret: bool = False) -> set[str]:
    """The values outside every field's value: they must survive redaction."""
    if isinstance(tree, dict):
        return {v for k, t in tree.items() for v in kept(t, secret or POLICY.matches(k))}
    if isinstance(tree, list):
        return {v for t in tree for v in kept(t, secret)}
    return set() if secret else {tree}


def to_form(pairs: list[tuple[str, str]]) -> str:
    return "&".join(f"{quote_plus(n)}={quote_plus(v)}" for n, v in pairs)


def to_xml(tree, tag: str = "doc", prefix: str = "", cdata: bool = False) -> str:
    """Elements for dicts, <item>s for lists; child tags maybe namespaced, text maybe
    CDATA."""
    if isinstance(tree, dict):
        inner = "".join(to_xml(t, prefix + n, prefix, cdata) for n, t in tree.items())
    elif isinstance(tree, list):
        inner = "".join(to_xml(t, prefix + "item", prefix, cdata) for t in tree)
    else:
        inner = f"<![CDATA[{tree}]]>" if cdata else str(tree)
    return f"<{tag}>{inner}</{tag}>"


@st.composite
def xml_docs(draw) -> tuple[str, set[str]]:
    tree = draw(trees(separators=("", "-", "_")))  # no spaces in XML names
    keep = kept(tree)
    # Attributes on the root: a field's value is a secret wherever it is written.
    attrs = draw(st.lists(names(("", "-", "_")), max_size=3, unique_by=lambda x: x[0].lower()))
    text = ""
    for name, is_field in attrs:
        value = draw(SECRETS if is_field else SAFE_VALUES)
        text += f' {name}="{value}"'
        if not is_field:
            keep.add(value)
    prefix = draw(st.sampled_from(("", "ns:", "soap-env:")))
    body = to_xml(tree, prefix=prefix, cdata=draw(st.booleans()))
    return "<doc" + text + body[4:], keep


@st.composite
def form_docs(draw) -> tuple[str, set[str]]:
    pairs = []
    for name, is_field in draw(st.lists(names(), min_size=1, max_size=6)):
        pairs.append((name, draw(SECRETS if is_field else SAFE_VALUES)))
    return to_form(pairs), {v for (n, v) in pairs if not POLICY.matches(n)}


@st.composite
def json_docs(draw) -> tuple[str, set[str]]:
    tree = draw(st.one_of(trees(), st.lists(trees(), max_size=3)))
    text = json.dumps(tree, indent=draw(st.sampled_from((None, 2))))
    if draw(st.booleans()):  # keys written with \u escapes, as some encoders do
        text = JSON_KEY.sub(lambda m: '"' + "".join(f"\\u{ord(c):04x}" for c in m[1]) + '":', text)
    return text, kept(tree)


JSON_KEY = re.compile(r'"([^"]*)":')  # values never hold a quote and a colon here


@st.composite
def multipart_docs(draw) -> tuple[str, set[str]]:
    parts = []
    keep: set[str] = set()
    eol = draw(st.sampled_from(("\r\n", "\n")))  # some clients end lines with LF only
    for name, is_field in draw(st.lists(names(), min_size=1, max_size=4)):
        if is_field:
            content, ctype = draw(SECRETS), None
        else:
            content, inner_keep = draw(st.one_of(SAFE_VALUES.map(lambda v: (v, {v})), documents))
            keep |= inner_keep
            ctype = draw(st.sampled_from(CONTENT_TYPES[:7]))
        head = f'Content-Disposition: form-data; name="{name}"{eol}'
        if ctype:
            head += f"Content-Type: {ctype}{eol}"
        parts.append(f"--{BOUNDARY}{eol}{head}{eol}{content}{eol}")
    return "".join(parts) + f"--{BOUNDARY}--{eol}", keep


documents = st.one_of(json_docs(), form_docs(), xml_docs())
BODIES = st.one_of(documents, multipart_docs())


@st.composite
def cut(draw, body: str) -> tuple[bytes, bool]:
    """The body as bytes, maybe gzipped (a coding the dissector could not undo), maybe cut
    short by the body cap: (bytes, are the kept values no longer plain to see)."""
    data = body.encode()
    zipped = draw(st.booleans())
    if zipped:
        data = gzip.compress(data, mtime=0)
    if draw(st.booleans()):
        return data, zipped
    at = draw(st.integers(0, len(data)))
    return data[:at], zipped or at < len(data)


def readable(body: bytes) -> bytes:
    """What anyone could read in a stored body: gzip left compressed is decompressed;
    without the \\u escapes of keys (their hex digits are no secret)."""
    if body[:2] == b"\x1f\x8b":
        body = zlib.decompressobj(31).decompress(body)
    return ESCAPE.sub(b"", body)


ESCAPE = re.compile(rb"\\u[0-9a-f]{0,4}")


def everything(call: ApiCall) -> bytes:
    """Every value of the call a secret could be in."""
    headers = call.request_headers + call.response_headers
    texts = [call.query, *(v for n, v in headers if n != "Content-Type")]
    return "\n".join(texts).encode() + readable(call.request_body) + readable(call.response_body)


# ------------------------------------------------------------------ properties


@settings(max_examples=400, deadline=None)
@given(data=st.data(), doc=BODIES, ctype=st.sampled_from(CONTENT_TYPES))
def test_no_secret_survives_in_any_body_whatever_its_content_type(data, doc, ctype):
    text, keep = doc
    body, hidden = data.draw(cut(text))
    side = data.draw(st.sampled_from(("request", "response")))
    out = redact(body_call(ctype, body, side), POLICY)
    redacted = getattr(out, f"{side}_body")
    assert not DIGIT.search(readable(redacted)), (body, redacted)
    if not hidden:
        for value in keep:
            assert value.encode() in redacted, (value, body, redacted)
    assert redact(out, POLICY) == out  # idempotent


@settings(max_examples=300, deadline=None)
@given(
    data=st.data(),
    protocol=st.sampled_from(("http", "http2", "grpc", "gql", "websocket")),
    headers=st.lists(names(("", "-", "_")), max_size=5),
    query=st.lists(names(), max_size=5),
    cookies=st.lists(names(("", "-", "_")), max_size=3),
    doc=BODIES,
    ctype=st.sampled_from(CONTENT_TYPES),
)
def test_no_secret_survives_anywhere_in_a_call(data, protocol, headers, query, cookies, doc, ctype):
    text, keep = doc
    request_headers = []
    for name, is_field in headers:
        value = data.draw(SECRETS if is_field else SAFE_VALUES)
        request_headers.append((name, value))
        if not is_field:
            keep.add(value)
    if cookies:
        jar = "; ".join(f"{n}={data.draw(SECRETS)}" for n, _ in cookies)
        request_headers.append(("Cookie", jar))
        request_headers.append(("Set-Cookie", f"{cookies[0][0]}={data.draw(SECRETS)}; Path=/"))
    pairs = [(n, data.draw(SECRETS if f else SAFE_VALUES)) for n, f in query]
    keep |= {v for n, v in pairs if not POLICY.matches(n)}
    if ctype:
        request_headers.append(("Content-Type", ctype))
    call = make(
        protocol=protocol,
        query=to_form(pairs),
        request_headers=tuple(request_headers),
        request_body=text.encode(),
        response_headers=(("Content-Type", "text/plain"),),
        response_body=text.encode(),
    )
    out = redact(call, POLICY)
    found = everything(out)
    assert not DIGIT.search(found), found
    for value in keep:
        assert value.encode() in found, (value, found)


@settings(max_examples=200, deadline=None)
@given(
    data=st.data(),
    doc=BODIES,
    protocol_method=st.sampled_from(
        (("amqp", "basic.publish"), ("amqp", "basic.deliver"), ("mongodb", "insert"))
    ),
)
def test_user_messages_of_other_protocols_are_sniffed_too(data, doc, protocol_method):
    text, _ = doc
    body, _ = data.draw(cut(text))
    protocol, method = protocol_method
    call = make(protocol=protocol, method=method, request_body=body, response_body=body)
    out = redact(call, POLICY)
    assert not DIGIT.search(readable(out.request_body) + readable(out.response_body))


# ------------------------------------------------------------------ regressions

LOGIN = b'{"username": "bob", "password": "hunter2", "remember": true}'


@pytest.mark.parametrize(
    "ctype", ["application/x-www-form-urlencoded", "text/plain", None, "application/octet-stream"]
)
def test_json_body_with_a_wrong_or_missing_content_type(ctype):
    out = redact(body_call(ctype, LOGIN, "request"))
    assert json.loads(out.request_body) == {"username": R, "password": R, "remember": True}


def test_form_body_sent_as_json():
    out = redact(body_call("application/json", b"username=bob&password=hunter2&page=2"))
    assert out.response_body == f"username={R}&password={R}&page=2".encode()


def test_truncated_json_loses_whole_nested_values():
    cut_short = b'{"id": "a1", "address": {"street": "Main", "city": "X"}, "items": [{"token": ["t1'
    out = redact(body_call(None, cut_short))
    assert (
        out.response_body
        == b'{"id": "a1", "address": "[REDACTED]", "items": [{"token": "[REDACTED]"'
    )
    several = redact(body_call("text/plain", b'{"a": 1}\n{"jwt": "e.y.j"}\n'))
    assert several.response_body == b'{"a": 1}\n{"jwt": "[REDACTED]"}\n'


def test_xml_attributes_and_a_cut_off_tag():
    xml = b'<login user="bob" lang="en"><item apiKey="k1" color="red">v</item><x pass="s3'
    out = redact(body_call("text/plain", xml))
    assert out.response_body == (
        b'<login user="[REDACTED]" lang="en"><item apiKey="[REDACTED]" color="red">v</item>'
        b'<x pass="[REDACTED]"'
    )


def test_multipart_parts_by_name_and_by_content():
    body = (
        b"--b0undary\r\n"
        b'Content-Disposition: form-data; name="password"\r\n\r\nhunter2\r\n'
        b"--b0undary\r\n"
        b'Content-Disposition: form-data; name="meta"\r\nContent-Type: text/plain\r\n\r\n'
        b'{"token": "t", "page": 1}\r\n'
        b"--b0undary\r\n"
        b'Content-Disposition: form-data; name="avatar"; filename="me.png"\r\n\r\n'
        b"\x89PNG\r\n\x1a\n\x00key=1\r\n"
        b"--b0undary\r\n"
        b'Content-Disposition: form-data; name="first name"\r\n\r\nAda, cut by the c'
    )
    out = redact(body_call("application/json", body, "request"))  # a wrong type, too
    assert out.request_body == (
        b"--b0undary\r\n"
        b'Content-Disposition: form-data; name="password"\r\n\r\n[REDACTED]\r\n'
        b"--b0undary\r\n"
        b'Content-Disposition: form-data; name="meta"\r\nContent-Type: text/plain\r\n\r\n'
        b'{"token":"[REDACTED]","page":1}\r\n'
        b"--b0undary\r\n"
        b'Content-Disposition: form-data; name="avatar"; filename="me.png"\r\n\r\n'
        b"\x89PNG\r\n\x1a\n\x00key=1\r\n"
        b"--b0undary\r\n"
        b'Content-Disposition: form-data; name="first name"\r\n\r\n[REDACTED]'
    )
    preamble = b"This is a preamble.\r\n" + body
    declared = redact(body_call("multipart/form-data; boundary=b0undary", preamble))
    assert b"hunter2" not in declared.response_body and b"Ada" not in declared.response_body


def test_prose_and_binary_keep_their_bytes():
    for ctype, body in [
        ("text/plain", b"Please send the password to the user by mail."),
        (None, b"[INFO] started in 3s"),
        ("image/png", b"\x89PNG\r\n\x1a\n\x00\x00password=x"),
    ]:
        call = body_call(ctype, body)
        assert redact(call) is call


# ------------------------------------------------------------------ user patterns (RE2)


def test_patterns_apply_to_undeclared_text_and_inside_structures():
    policy = RedactionPolicy(patterns=(r"\b\d{3}-\d{2}-\d{4}\b",))
    text = redact(body_call(None, "ssn: 123-45-6789 é".encode()), policy)
    assert text.response_body == "ssn: [REDACTED] é".encode()
    xml = redact(body_call("text/plain", b"<p><note>ssn 123-45-6789</note></p>"), policy)
    assert xml.response_body == b"<p><note>ssn [REDACTED]</note></p>"
    binary = body_call(None, b"\x00\x01 123-45-6789")
    assert redact(binary, policy) is binary  # not text: not touched


def test_replacement_is_literal_text():
    policy = RedactionPolicy(patterns=(r"(\d+)",), replacement=r"<\1 \g<0>>")
    out = redact(body_call("text/plain", b"pin 1234"), policy)
    assert out.response_body == rb"pin <\1 \g<0>>"


def test_patterns_run_in_linear_time():
    """(a+)+$ backtracks exponentially in a backtracking engine: this would not finish."""
    policy = RedactionPolicy(patterns=(r"(a+)+$",))
    body = b"a" * 40 + b"!"
    call = body_call("text/plain", body)
    assert redact(call, policy) is call


@pytest.mark.parametrize(
    ("pattern", "why"),
    [
        ("(a)\\1", "invalid escape sequence"),
        ("(?=a)b", "invalid perl operator"),
        ("(?<!a)b", "invalid perl operator"),
        ("x{2000}", "invalid repetition size"),
    ],
)
def test_patterns_re2_cannot_compile_are_one_line_errors(tmp_path, pattern, why):
    path = write(tmp_path, f"patterns:\n  - 'ok'\n  - '{pattern}'\n")
    with pytest.raises(ValueError) as err:
        RedactionPolicy.from_yaml(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}:3: bad regex ") and why in msg and "RE2" in msg
    assert "\n" not in msg


def test_forms_as_clients_really_write_them():
    for body, expected in [
        (b"=x&password=y", f"=x&password={R}"),
        ("prénom=A&pass wort=1".encode(), f"prénom=A&pass wort={R}"),
        (b"user[name]=bob&page=2", f"user[name]={R}&page=2"),
    ]:
        assert redact(body_call(None, body)).response_body == expected.encode()
    json_string = body_call("application/json", b'"password=x"')
    assert redact(json_string) is json_string  # a JSON string, not a form


def test_json_inside_a_json_string_is_redacted_too():
    inner = json.dumps({"user": "bob", "n": [1]})
    body = json.dumps({"event": "login", "payload": inner}).encode()
    out = redact(body_call(None, body))
    assert json.loads(json.loads(out.response_body)["payload"]) == {"user": R, "n": [1]}
    assert redact(out) == out


@pytest.mark.parametrize(
    "body",
    [
        b"<password " + b"x" * 200_000,
        b"<user" + b" a=" * 70_000,
        b'<a "' * 50_000 + b"<password>1",
        b'{"password":' * 20_000,
        b'{"password": ' + b"[" * 200_000 + b"1",
        b'{"user"' + b":" * 200_000 + b"1",
        b"--b\r\n" + b"--b" * 70_000 + b'\r\nContent-Disposition: name="pass"\r\n\r\n1',
        b"password=1" + b"&password=1" * 20_000,
        b"a" * 200_000 + b"=x&pass=1",
    ],
)
def test_hostile_bodies_are_scanned_in_one_pass(body):
    """Each would take hours if a scanner went back over the text once per position; none
    may stop redaction or leak."""
    for ctype in (None, "text/plain", "multipart/form-data; boundary=b"):
        out = redact(body_call(ctype, body), POLICY)
        assert not DIGIT.search(out.response_body)


def test_a_gzip_body_the_dissector_could_not_decode_is_redacted_as_what_it_holds():
    secret = gzip.compress(LOGIN)
    out = redact(body_call("application/json", secret, "request"))
    assert json.loads(out.request_body) == {"username": R, "password": R, "remember": True}
    assert redact(out) == out
    harmless = body_call(None, gzip.compress(b'{"page": 2}'))
    assert redact(harmless) is harmless  # nothing to hide: the compressed bytes stay
    bomb = gzip.compress(b'{"password": "' + b"a" * 10_000_000)
    out = redact(body_call(None, bomb)).response_body
    assert out == b'{"password": "[REDACTED]"'  # decoded no further than a body is kept


def test_html_fields_named_by_an_attribute_lose_their_value():
    html = (
        b'<html><head><meta name="csrf-token" content="c5rf"><meta name="viewport" '
        b'content="width"></head><body><form><input type="hidden" name="authenticity_token" '
        b'value="t0k"><input name="q" value="shoes"></form></body></html>'
    )
    out = redact(body_call("text/html", html)).response_body
    assert out == (
        b'<html><head><meta name="csrf-token" content="[REDACTED]"><meta name="viewport" '
        b'content="width"></head><body><form><input type="hidden" name="authenticity_token" '
        b'value="[REDACTED]"><input name="q" value="shoes"></form></body></html>'
    )


def test_the_pipeline_redacts_what_a_go_client_sends_without_a_content_type():
    """Real bytes through reassembly, the HTTP dissector and the redact stage."""
    client, server = ("10.0.0.1", 40000), ("10.0.0.2", 80)
    body = b'{"username":"gopher","password":"hunter2","page":"two"}'
    request = (
        b"POST /login HTTP/1.1\r\nHost: api\r\nUser-Agent: Go-http-client/1.1\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    reply = b'{"token":"eyJhbGciOi","user":{"id":"u1","name":"Gopher"}}'
    response = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(reply), reply)
    )
    calls, _ = run(
        [
            tcp(client, server, 0, flags=SYN),
            tcp(server, client, 0, flags=SYN | ACK),
            tcp(client, server, 1, request, ts=1),
            tcp(server, client, 1, response, ts=2),
        ]
    )
    (call,) = [c for c in calls if c.protocol == "http"]
    assert json.loads(call.request_body) == {"username": R, "password": R, "page": "two"}
    assert json.loads(call.response_body) == {"token": R, "user": R}


def _spelled_by_definition(policy: RedactionPolicy, data: bytes) -> bool:
    """`spelled_in` as its docstring defines it: lower-case as `normalize` does, drop the
    separators, look for each field's spelling."""
    text = data.decode("utf-8", "surrogateescape").lower()
    squeezed = text.translate(str.maketrans("", "", "-_. ")).replace("ς", "σ")
    return any(f in squeezed.encode("utf-8", "surrogatepass") for f in policy._spellings)


@settings(max_examples=500, deadline=None)
@given(
    data=st.lists(
        st.sampled_from(
            [
                "u",
                "S",
                "e",
                "R",
                "k",
                "E",
                "y",
                "-",
                "_",
                ".",
                " ",
                "Zi",
                "p",
                "aUTh",
                "Σ",
                "ς",
                "é",
                "\x00",
                "{",
                '"',
                "\udcff",
                "tok en",
            ]
        ),
        max_size=16,
    ).map(lambda xs: "".join(xs).encode("utf-8", "surrogateescape")),
    fields=st.sampled_from([(), ("ké", "x.y", "ας"), ("Σ",), DEFAULT_FIELDS]),
)
def test_spelled_in_finds_exactly_the_fields_its_definition_finds(data, fields):
    """One automaton over the raw bytes (separators and case allowed between letters) finds
    a field exactly when lower-casing, squeezing and searching for it would."""
    policy = RedactionPolicy(fields=fields)
    assert policy.spelled_in(data) == _spelled_by_definition(policy, data)
