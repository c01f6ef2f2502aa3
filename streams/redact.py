"""The `redact` stage: hide secrets and personal data in an `ApiCall` before it leaves the
stream layer. Pure: `redact(call, policy) -> ApiCall`.

A header, query parameter, cookie, JSON key, form field, multipart part, XML tag or XML
attribute is redacted when its name - lower-cased, with ``-``, ``_`` and spaces removed -
contains one of the policy's field substrings (defaults from Mizu, see REFERENCE.md). The
list is applied literally: ``user`` also hides ``User-Agent``, ``cookie`` hides whole
``Cookie`` / ``Set-Cookie`` headers. A matching key or tag loses its whole value (nested
objects and child elements too).

What a body is comes from its bytes, not its Content-Type, which clients get wrong or
leave out (Go's): JSON by its first non-space byte ``{`` / ``[``, XML by ``<``, multipart
by a leading ``--boundary`` line, a form by a leading ``name=``; the declared type only
decides what the bytes cannot tell (a bare JSON string, UTF-16 JSON, a multipart
preamble). JSON and XML cut off by the body cap are scanned tolerantly, so a truncated
body loses its secrets too; JSON inside a JSON string value is redacted as JSON. Binary
bodies (images, protobuf) are left alone.

User patterns replace matches in text bodies (declared text, or no control bytes) and in
the strings of JSON, XML and form bodies. They run on RE2 (``google-re2``): linear time
whatever the pattern or body. Our own regexes stay on ``re`` and are linear too: each is
anchored, or its repeated parts stop at a byte that ends them, so no text is scanned once
per starting position (tests/streams/test_redact_sniff.py has the hostile inputs).

Policy file (YAML)::

    fields: [ssn, creditcard]      # added to the defaults ...
    replace_defaults: false        # ... or, when true, used instead of them
    patterns:                      # regexes for text bodies
      - '\\b\\d{3}-\\d{2}-\\d{4}\\b'
    replacement: "[REDACTED]"
"""

from __future__ import annotations

import json
import math
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from dataclasses import fields as dataclass_fields
from operator import attrgetter
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import orjson
import re2
import yaml

from schemas.records import ApiCall, Headers, record_maker

REPLACEMENT = "[REDACTED]"
DEFAULT_FIELDS: tuple[str, ...] = (
    "token", "authorization", "authentication", "cookie", "userid", "password", "username",
    "user", "key", "passcode", "pass", "auth", "authtoken", "jwt", "bearer", "clientid",
    "clientsecret", "redirecturi", "phonenumber", "zip", "zipcode", "address", "country",
    "firstname", "lastname", "middlename", "fname", "lname", "birthdate",
)  # fmt: skip
_YAML_KEYS = ("fields", "replace_defaults", "patterns", "replacement")
_NAME_CACHE_MAX = 4096


_SQUEEZE = str.maketrans("", "", "-_. ")


def normalize(name: str) -> str:
    """Lower-case, without ``-``, ``_`` and spaces: how names are compared to fields."""
    return name.lower().replace("-", "").replace("_", "").replace(" ", "")


@dataclass(frozen=True)
class RedactionPolicy:
    """What to redact: field-name substrings, body regexes, and the replacement text."""

    fields: tuple[str, ...] = DEFAULT_FIELDS
    patterns: tuple[str, ...] = ()
    replacement: str = REPLACEMENT
    _field_rx: re.Pattern[str] | None = field(init=False, repr=False, compare=False, default=None)
    _body_rx: tuple[re2._Regexp, ...] = field(init=False, repr=False, compare=False, default=())
    _cache: dict[str, bool] = field(init=False, repr=False, compare=False, default_factory=dict)
    # The fields as `spelled_in` looks for them (UTF-8, final sigma as sigma).
    _spellings: tuple[bytes, ...] = field(init=False, repr=False, compare=False, default=())
    # Could a pattern match inside a JSON string but not in the raw body (anchors)?
    _anchored: bool = field(init=False, repr=False, compare=False, default=False)
    # header name -> what to do with it (see _header_code); raw query name -> matches?
    _header_codes: dict[str, int] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )
    _query_cache: dict[str, bool] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )
    # query string -> what `_query` made of it (None: unchanged); clients repeat them too
    _query_memo: dict[str, str | None] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )
    # header tuple -> what `_headers` made of it (clients send the same headers again)
    _headers_memo: dict[Headers, tuple[Headers | None, str]] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )
    # (the spellings they were made for, finder in ASCII bytes, finder in squeezed bytes)
    _finders: tuple | None = field(init=False, repr=False, compare=False, default=None)
    # (body, declared type) -> what `_body` made of it (None: unchanged); servers send the
    # same bodies again (static pages, fixed JSON), and `_body` is pure
    _body_memo: dict[tuple[bytes, str], bytes | None] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        fields = tuple(dict.fromkeys(f for f in (normalize(x) for x in self.fields) if f))
        object.__setattr__(self, "fields", fields)
        rx = re.compile("|".join(map(re.escape, fields))) if fields else None
        object.__setattr__(self, "_field_rx", rx)
        squeezed = {f.translate(_SQUEEZE).replace("ς", "σ") for f in fields}
        # A field holding another adds nothing to the search; short ones are tried first.
        spellings = tuple(
            f.encode("utf-8", "surrogatepass")
            for f in sorted(squeezed, key=lambda f: (len(f), f))
            if not any(g != f and g in f for g in squeezed)
        )
        object.__setattr__(self, "_spellings", spellings)
        compiled = []
        for p in self.patterns:
            rx = compile_pattern(p)
            if isinstance(rx, str):
                raise ValueError(f"bad redaction regex {p!r}: {rx}")
            compiled.append(rx)
        object.__setattr__(self, "_body_rx", tuple(compiled))
        anchors = ("^", "$", "\\A", "\\z")
        object.__setattr__(self, "_anchored", any(a in p for p in self.patterns for a in anchors))

    @classmethod
    def default(cls) -> RedactionPolicy:
        return cls()

    @classmethod
    def from_yaml(cls, path: str | Path) -> RedactionPolicy:
        """Load a policy file; any problem is a `ValueError` with one line: file:line: what."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise ValueError(f"{path}: cannot read redaction policy: {_one_line(e)}") from None
        try:
            root = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
            what = getattr(e, "problem", None) or _one_line(e)
            raise ValueError(f"{where}: invalid YAML: {_one_line(what)}") from None
        if root is None:
            return cls()
        if not isinstance(root, yaml.MappingNode):
            raise ValueError(
                f"{path}:{_line(root)}: expected a mapping with keys {', '.join(_YAML_KEYS)}"
            )
        fields: list[str] = []
        patterns: list[str] = []
        replace_defaults = False
        replacement = REPLACEMENT
        for key_node, value in root.value:
            key = key_node.value
            where = f"{path}:{_line(key_node)}"
            if key == "fields":
                fields = _strings(value, path, key)
            elif key == "patterns":
                patterns = _strings(value, path, key)
                for item, p in zip(value.value, patterns, strict=True):
                    problem = compile_pattern(p)
                    if isinstance(problem, str):
                        raise ValueError(f"{path}:{_line(item)}: bad regex {p!r}: {problem}")
            elif key == "replace_defaults":
                v = yaml.safe_load(yaml.serialize(value))
                if not isinstance(v, bool):
                    raise ValueError(f"{where}: replace_defaults must be true or false")
                replace_defaults = v
            elif key == "replacement":
                if not isinstance(value, yaml.ScalarNode):
                    raise ValueError(f"{where}: replacement must be a string")
                replacement = value.value
            else:
                raise ValueError(f"{where}: unknown key {key!r} (expected {', '.join(_YAML_KEYS)})")
        base = () if replace_defaults else DEFAULT_FIELDS
        return cls(fields=(*base, *fields), patterns=tuple(patterns), replacement=replacement)

    def spelled_in(self, data: bytes) -> bool:
        """Could a field be written anywhere in these bytes - any case, any ``-``, ``_``,
        ``.`` or space between its letters? A superset of every name in them that
        `matches`, found at C speed (one RE2 automaton pass over the bytes for all the
        fields), so most bodies need no parsing."""
        finders = self._finders
        if finders is None or finders[0] is not self._spellings:
            finders = _spelling_finders(self._spellings)
            object.__setattr__(self, "_finders", finders)
        if data.isascii():  # letters spaced by separators, in any case, on the bytes as they are
            spread = finders[1]
            return spread is not None and spread(data)
        # As `normalize` lower-cases; the final sigma is the only context rule.
        text = data.decode("utf-8", "surrogateescape").lower().translate(_SQUEEZE)
        squeezed = text.replace("ς", "σ").encode("utf-8", "surrogatepass")
        return finders[2](squeezed)

    def matches(self, name: str) -> bool:
        """Does this header / parameter / key / tag name hold something to hide?"""
        cache = self._cache
        hit = cache.get(name)
        if hit is None:
            rx = self._field_rx
            hit = rx is not None and rx.search(normalize(name)) is not None
            if len(cache) >= _NAME_CACHE_MAX:
                cache.clear()
            cache[name] = hit
        return hit


_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # the error is ours to report, in one line


_BYTES = re2.Options()  # every byte one character: a pattern for raw bytes, whatever they are
_BYTES.encoding = re2.Options.Encoding.LATIN1
_BYTES.log_errors = False


def _byte_class(b: int) -> bytes:
    if 97 <= b <= 122:
        return b"[%c%c]" % (b, b - 32)  # ASCII case only, as bytes.lower() folds it
    return b"\\x%02x" % b


def _spelling_finders(spellings: tuple[bytes, ...]) -> tuple:
    """(spellings, a test finding any ASCII one in raw ASCII bytes with any case and ``-_.``
    or spaces between its letters (None when none is ASCII), a test finding any one as it is
    in squeezed bytes). One automaton pass instead of a substring search per field."""
    sep = b"[-_. ]*"
    spread = [sep.join(_byte_class(b) for b in f) for f in spellings if f.isascii()]
    squeezed = [b"".join(b"\\x%02x" % b for b in f) for f in spellings]
    return (
        spellings,
        _finds(re2.compile(b"|".join(b"(?:%s)" % x for x in spread), _BYTES)) if spread else None,
        _finds(
            re2.compile(b"|".join(b"(?:%s)" % x for x in squeezed) or b"[^\\x00-\\xff]", _BYTES)
        ),
    )


def _finds(rx: re2._Regexp) -> Callable[[bytes], bool]:
    """Does `rx` match anywhere in the bytes? On RE2's own matcher when this google-re2
    has it (its `search` builds a match object through a generator: a few us a call)."""
    raw, anchors = getattr(rx, "_regexp", None), getattr(re2, "_Anchor", None)
    if raw is None or anchors is None:
        return lambda data: rx.search(data) is not None
    match, unanchored = raw.Match, anchors.UNANCHORED
    return lambda data: match(unanchored, data, 0, len(data))[0][0] >= 0


def compile_pattern(pattern: str) -> re2._Regexp | str:
    """A user pattern compiled by RE2 (linear time), or why RE2 cannot take it."""
    try:
        # Compiled for UTF-8 bytes: bodies are matched as they are, invalid UTF-8 included.
        return re2.compile(pattern.encode("utf-8", "surrogatepass"), _RE2_OPTIONS)
    except re2.error as e:
        why = e.args[0] if e.args else e
        why = why.decode("utf-8", "replace") if isinstance(why, bytes) else str(why)
        return _one_line(why) + " (RE2 syntax)"


def _one_line(x: object) -> str:
    return " ".join(str(x).split())


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _strings(node: yaml.Node, path: Path, key: str) -> list[str]:
    if not isinstance(node, yaml.SequenceNode):
        raise ValueError(f"{path}:{_line(node)}: {key} must be a list of strings")
    out = []
    for item in node.value:
        if not isinstance(item, yaml.ScalarNode) or item.tag.endswith(":null"):
            raise ValueError(f"{path}:{_line(item)}: {key} must be a list of strings")
        out.append(item.value)
    return out


DEFAULT_POLICY = RedactionPolicy()


# ------------------------------------------------------------------ the stage


# Protocols whose headers are HTTP headers (names and values a user chose); other
# protocols put their own structural fields there (streams/dissect/README.md).
HEADER_PROTOCOLS = frozenset({"http", "http2", "grpc", "gql", "websocket"})
# Protocols whose bodies are the user's documents, redacted by key when they are JSON;
# other protocols' bodies are the dissector's own summary (DNS answers, Kafka offsets).
DOCUMENT_PROTOCOLS = frozenset({"websocket", "mongodb"})
# (protocol, method) whose bodies are a message the user sent, whatever type it declares;
# AMQP's other methods carry the protocol's own arguments (routing-key, consumer-tag).
MESSAGE_METHODS = frozenset(
    ("amqp", m) for m in ("basic.publish", "basic.deliver", "basic.return", "basic.get")
)


def _declared_type(headers: tuple[tuple[str, str], ...]) -> str:
    for name, value in headers:
        if name in ("content_type", "content-type"):
            return value
    return ""


def redact(call: ApiCall, policy: RedactionPolicy = DEFAULT_POLICY) -> ApiCall:
    """The call with sensitive values replaced (the same object when nothing matched)."""
    req_headers = resp_headers = query = req_body = resp_body = None
    req_ctype = resp_ctype = ""
    protocol = call.protocol
    # Bodies the user wrote are sniffed whatever their type says; a protocol's own summary
    # (DNS answers, Kafka offsets, AMQP arguments) only when it declares a document type.
    sniff = (
        protocol in HEADER_PROTOCOLS
        or protocol in DOCUMENT_PROTOCOLS
        or (protocol, call.method) in MESSAGE_METHODS
    )
    if protocol in DOCUMENT_PROTOCOLS:
        req_ctype = resp_ctype = "application/json"  # bodies are the user's documents
    if protocol not in HEADER_PROTOCOLS:
        # Its "headers" are the protocol's own fields (api_key, client_id, user, ...);
        # a message body is redacted by the content type it declares (AMQP).
        req_ctype = req_ctype or _declared_type(call.request_headers)
        resp_ctype = resp_ctype or _declared_type(call.response_headers)
    elif call.request_headers:
        req_headers, req_ctype = _headers(call.request_headers, policy)
    if call.response_headers and protocol in HEADER_PROTOCOLS:
        resp_headers, resp_ctype = _headers(call.response_headers, policy)
    if call.query:
        query = _query(call.query, policy)
    if call.request_body and (sniff or req_ctype):
        req_body = _remembered_body(call.request_body, req_ctype, policy)
    if call.response_body and (sniff or resp_ctype):
        resp_body = _remembered_body(call.response_body, resp_ctype, policy)
    if (
        req_headers is None
        and resp_headers is None
        and query is None
        and req_body is None
        and resp_body is None
    ):
        return call
    values = list(_GET_FIELDS(call))
    if req_headers is not None:
        values[_I_REQ_HEADERS] = req_headers
    if resp_headers is not None:
        values[_I_RESP_HEADERS] = resp_headers
    if query is not None:
        values[_I_QUERY] = query
    if req_body is not None:
        values[_I_REQ_BODY] = req_body
    if resp_body is not None:
        values[_I_RESP_BODY] = resp_body
    return _make_call(*values)


_CALL_FIELDS = tuple(f.name for f in dataclass_fields(ApiCall))
_GET_FIELDS = attrgetter(*_CALL_FIELDS)
_I_REQ_HEADERS = _CALL_FIELDS.index("request_headers")
_I_RESP_HEADERS = _CALL_FIELDS.index("response_headers")
_I_QUERY = _CALL_FIELDS.index("query")
_I_REQ_BODY = _CALL_FIELDS.index("request_body")
_I_RESP_BODY = _CALL_FIELDS.index("response_body")


_make_call = record_maker(ApiCall)  # ApiCall(*values), faster

# What a header asks for, by exact name (cached per policy): one action in the low bits,
# plus _CTYPE when it is the Content-Type.
_KEEP, _HIDE, _COOKIE, _SET_COOKIE, _ACTION, _CTYPE = 0, 1, 2, 3, 3, 4


def _header_code(name: str, policy: RedactionPolicy) -> int:
    low = name.lower()
    code = _CTYPE if low == "content-type" else _KEEP
    if policy.matches(name):
        code |= _HIDE
    elif low == "cookie":
        code |= _COOKIE
    elif low == "set-cookie":
        code |= _SET_COOKIE
    codes = policy._header_codes
    if len(codes) >= _NAME_CACHE_MAX:
        codes.clear()
    codes[name] = code
    return code


_HEADERS_MEMO_MAX = 1024  # header tuples remembered per policy
_HEADERS_MEMO_CHARS = 4096  # longer ones are redacted each time


def _headers(headers: Headers, policy: RedactionPolicy) -> tuple[Headers | None, str]:
    """(redacted headers or None if unchanged, the Content-Type value); from memory when
    the same headers came before (the dissector hands a repeated head's very tuple)."""
    memo = policy._headers_memo
    try:
        known = memo.get(headers)
    except TypeError:  # not hashable (a list in it): redacted each time
        return _redact_headers(headers, policy)
    if known is None:
        known = _redact_headers(headers, policy)
        if sum([len(n) + len(v) for n, v in headers]) <= _HEADERS_MEMO_CHARS:
            if len(memo) >= _HEADERS_MEMO_MAX:
                memo.clear()
            memo[headers] = known
    return known


def _redact_headers(headers: Headers, policy: RedactionPolicy) -> tuple[Headers | None, str]:
    codes = policy._header_codes
    out: list[tuple[str, str]] | None = None
    ctype = ""
    for k, (name, value) in enumerate(headers):
        code = codes.get(name)
        if code is None:
            code = _header_code(name, policy)
        if code:
            if code & _CTYPE:
                ctype = value
            action = code & _ACTION
            if action == _HIDE:
                new = policy.replacement
            elif action == _COOKIE:
                new = _cookie(value, policy)
            elif action == _SET_COOKIE:
                new = _set_cookie(value, policy)
            else:
                new = value
            if new != value:
                if out is None:
                    out = list(headers[:k])
                out.append((name, new))
                continue
        if out is not None:
            out.append((name, value))
    return (tuple(out) if out is not None else None), ctype


def _cookie(value: str, policy: RedactionPolicy) -> str:
    parts = value.split(";")
    changed = False
    for k, part in enumerate(parts):
        name, eq, _ = part.partition("=")
        if eq and policy.matches(name.strip()):
            parts[k] = f"{name}={policy.replacement}"
            changed = True
    return ";".join(parts) if changed else value


def _set_cookie(value: str, policy: RedactionPolicy) -> str:
    pair, sep, attrs = value.partition(";")
    name, eq, _ = pair.partition("=")
    if eq and policy.matches(name.strip()):
        return f"{name}={policy.replacement}{sep}{attrs}"
    return value


_QUERY_MEMO_CHARS = 512  # longer query strings are redacted each time
_UNSEEN: Any = object()


def _query(text: str, policy: RedactionPolicy) -> str | None:
    """`_redact_query`, from memory when the same query string came before."""
    memo = policy._query_memo
    new = memo.get(text, _UNSEEN)
    if new is not _UNSEEN:
        return new
    new = _redact_query(text, policy)
    if len(text) <= _QUERY_MEMO_CHARS:
        if len(memo) >= _NAME_CACHE_MAX:
            memo.clear()
        memo[text] = new
    return new


def _redact_query(text: str, policy: RedactionPolicy) -> str | None:
    """`_pairs` for a query string, with the verdict on each raw (still quoted) name cached."""
    if "=" not in text:
        return None
    cache = policy._query_cache
    repl = policy.replacement
    parts = text.split("&")
    changed = False
    for k, part in enumerate(parts):
        name, eq, value = part.partition("=")
        if eq and value != repl:
            hit = cache.get(name)
            if hit is None:
                hit = policy.matches(unquote_plus(name))
                if len(cache) >= _NAME_CACHE_MAX:
                    cache.clear()
                cache[name] = hit
            if hit:
                parts[k] = f"{name}={repl}"
                changed = True
    return "&".join(parts) if changed else None


def _pairs(text: str, policy: RedactionPolicy, sep: str = "&") -> str | None:
    """Redact `name=value` pairs (query strings, form bodies); None when unchanged."""
    parts = text.split(sep)
    changed = False
    for k, part in enumerate(parts):
        name, eq, value = part.partition("=")
        if eq and value != policy.replacement and policy.matches(unquote_plus(name)):
            parts[k] = f"{name}={policy.replacement}"
            changed = True
    return sep.join(parts) if changed else None


# ---------------------------------------------------------------------- bodies


# What a body is, from its first bytes (a BOM and white space skipped). Linear: anchored,
# and the white-space run is followed by a byte it cannot match or by the end.
_FIRST_BYTE = re.compile(rb"(?:\xef\xbb\xbf)?[ \t\r\n]*(.)", re.S)
# "--boundary" then the end of the line (RFC 2046: at most 70 characters, no spaces).
_MULTIPART_START = re.compile(rb"--([!-~]{1,70})\r?\n")
# A form starts with a name (no space, control byte or quote: not prose, not binary, not a
# JSON string), then "=".
_FORM_START = re.compile(rb'[^\x00-\x20\x7f=&"]*=')  # anchored: linear
_BOUNDARY_PARAM = re.compile(r';\s*boundary\s*=\s*(?:"([^"]{1,70})"|([^\s;]{1,70}))', re.I)
# Control bytes that plain text does not have (tab, new lines and form feed allowed).
_BINARY_BYTE = re.compile(rb"[\x00-\x08\x0b\x0e-\x1f\x7f]")
_MAX_NESTING = 4  # multipart inside multipart ...


def _body(body: bytes, ctype: str, policy: RedactionPolicy, depth: int = 0) -> bytes | None:
    """The redacted body, or None when nothing changed."""
    mime = ctype.partition(";")[0].strip().lower()
    first = _FIRST_BYTE.match(body)
    lead = first.group(1) if first else b""
    if lead == b"{" or lead == b"[":
        return _json(body, policy)
    if lead == b"<":
        return _xml_body(body, policy)
    if lead == b"-":
        m = _MULTIPART_START.match(body, first.start(1))
        if m is not None:
            return _multipart(body, m.group(1), policy, depth)
    if body[:2] == b"\x1f\x8b" and depth < _MAX_NESTING:
        return _gzipped(body, ctype, policy, depth)
    if (first is not None and _FORM_START.match(body, first.start(1))) or (
        mime == "application/x-www-form-urlencoded"
    ):
        text = body.decode("utf-8", "surrogateescape")
        new = _pairs(text, policy)
        return _text(new if new is not None else text, policy, changed=new is not None)
    # What the bytes cannot tell: a bare JSON string or number, UTF-16/32 JSON, XML or
    # multipart behind a preamble.
    if "json" in mime:
        return _json(body, policy)
    if "xml" in mime:
        return _xml_body(body, policy)
    if mime.startswith("multipart/"):
        m = _BOUNDARY_PARAM.search(ctype)
        if m is not None:
            boundary = (m.group(1) or m.group(2)).encode("utf-8", "surrogateescape")
            return _multipart(body, boundary, policy, depth)
    if not policy._body_rx:
        return None
    if mime.startswith("text/") or _BINARY_BYTE.search(body) is None:
        return _text(body.decode("utf-8", "surrogateescape"), policy, changed=False)
    return None  # binary: images, protobuf, archives


_GUNZIP_MAX = 64 * 1024  # as much as the HTTP dissector keeps of a decoded body


_BODY_MEMO_MAX = 512  # bodies remembered per policy
_BODY_MEMO_BYTES = 8192  # longer bodies are redacted each time (hashing them is cheap,
# but they seldom repeat and would hold memory)


def _remembered_body(body: bytes, ctype: str, policy: RedactionPolicy) -> bytes | None:
    """`_body` at depth 0, from memory when the same bytes with the same declared type
    came before. A miss costs a hash of at most 8 KiB (~0.1 us); a hit spares the sniff,
    the field scan and any parse (5-9 us for a 0.2-2 KB JSON or HTML body)."""
    if len(body) > _BODY_MEMO_BYTES:
        return _body(body, ctype, policy)
    memo = policy._body_memo
    key = (body, ctype)
    new = memo.get(key, _UNSEEN)
    if new is _UNSEEN:
        new = _body(body, ctype, policy)
        if new is None or len(new) <= _BODY_MEMO_BYTES:  # a gunzipped one may be longer
            if len(memo) >= _BODY_MEMO_MAX:
                memo.clear()
            memo[key] = new
    return new


def _gzipped(body: bytes, ctype: str, policy: RedactionPolicy, depth: int) -> bytes | None:
    """A gzip body the dissector could not decode (stacked or unknown codings): redacted
    as what it holds. Something to hide: the redacted plain text (at most as much as the
    dissector keeps) replaces it; nothing: the compressed bytes stay."""
    try:
        plain = zlib.decompressobj(31).decompress(body, _GUNZIP_MAX)
    except zlib.error:
        return None
    if not plain:
        return None
    return _body(plain, ctype, policy, depth + 1)


def _xml_body(body: bytes, policy: RedactionPolicy) -> bytes | None:
    # XML names have no escapes: with no field spelled in the tags, none matches. (Text
    # with a quote in it is kept, since it may be the rest of a tag, after a ">" in a
    # quoted attribute value.)
    may = policy.spelled_in(body) and policy.spelled_in(_XML_TEXT.sub(b"><", body))
    if not may and not policy._body_rx:
        return None  # nothing to find: spare decoding the body
    text = body.decode("utf-8", "surrogateescape")
    new = _xml(text, policy) if may else None
    return _text(new if new is not None else text, policy, changed=new is not None)


_XML_TEXT = re.compile(rb">[^<>\"']*<")  # stops at any "<", ">" or quote: linear


_PART_NAME = re.compile(rb'\bname\*?\s*=\s*(?:"([^"\r\n]*)"|([^;\s]*))', re.I)
_PART_TYPE = re.compile(rb"^content-type[ \t]*:[ \t]*([^\r\n]*)", re.I | re.M)


def _multipart(body: bytes, boundary: bytes, policy: RedactionPolicy, depth: int) -> bytes | None:
    """Each part: a part named like a field loses its content, any other is redacted as a
    body of its own (sniffed). A part cut off by the body cap runs to the end."""
    delimiter = b"--" + boundary
    chunks = body.split(delimiter)
    if len(chunks) < 2:
        return None
    repl = policy.replacement.encode("utf-8", "surrogateescape")
    changed = False
    for k in range(1, len(chunks)):
        chunk = chunks[k]
        if chunk.startswith(b"--"):
            continue  # the closing delimiter, then the epilogue
        cut = chunk.find(b"\r\n\r\n")
        gap = 4
        if cut < 0:
            cut, gap = chunk.find(b"\n\n"), 2
        if cut < 0:
            continue  # cut off inside the part's headers: no content yet
        head, content = chunk[:cut], chunk[cut + gap :]
        eol = b"\r\n" if content.endswith(b"\r\n") else b"\n" if content.endswith(b"\n") else b""
        value = content[: len(content) - len(eol)]
        m = _PART_NAME.search(head)
        name = (m.group(1) or m.group(2) or b"").decode("utf-8", "surrogateescape") if m else ""
        if name and policy.matches(name):
            new = repl if value and value != repl else None
        elif depth < _MAX_NESTING and value:
            t = _PART_TYPE.search(head)
            ctype = t.group(1).decode("latin-1") if t else ""
            new = _body(value, ctype, policy, depth + 1)
        else:
            new = None
        if new is not None:
            chunks[k] = head + chunk[cut : cut + gap] + new + eol
            changed = True
    return delimiter.join(chunks) if changed else None


def _text(text: str, policy: RedactionPolicy, changed: bool) -> bytes | None:
    """Apply the body regexes; the new bytes, or None when nothing changed at all."""
    data = text.encode("utf-8", "surrogateescape")
    if policy._body_rx:
        data, hit = _scrub(data, policy)
        changed = changed or hit
    return data if changed else None


def _scrub(data: bytes, policy: RedactionPolicy) -> tuple[bytes, bool]:
    """The user's patterns replaced in UTF-8 bytes (literally: no template expansion)."""
    repl = policy.replacement.encode("utf-8", "surrogateescape")
    literal = lambda _m: repl  # noqa: E731
    changed = False
    for rx in policy._body_rx:
        if rx.search(data) is not None:
            data, n = rx.subn(literal, data)
            changed = changed or n > 0
    return data, changed


def _finite_float(s: str) -> float | str:
    f = float(s)
    return f if math.isfinite(f) else s  # 1e999 would not survive a round trip as JSON


def _json(body: bytes, policy: RedactionPolicy) -> bytes | None:
    """Parse (C), replace the values of matching keys while objects are built (one hook call
    per object, no second walk), and serialize again only when something changed."""
    scrub = bool(policy._body_rx) and _patterns_may_hit(body, policy)
    if not scrub and b"\\" not in body and 0 not in body[:4] and not policy.spelled_in(body):
        # Keys are then plain text in the body (UTF-8; a NUL up front would make json.loads
        # read UTF-16/32), and no field is spelled anywhere in it: no key matches.
        return None
    matches = policy.matches
    known = policy._cache
    repl = policy.replacement
    changed = False

    def hook(obj: dict) -> dict:
        nonlocal changed
        for k in obj:
            hit = known.get(k)
            if hit is None:
                hit = matches(k)
            if hit and obj[k] != repl:
                obj[k] = repl
                changed = True
        return obj

    def nested_hook(obj: dict) -> dict:
        nonlocal changed
        for k in obj:
            hit = known.get(k)
            if hit is None:
                hit = matches(k)
            if hit:
                if obj[k] != repl:
                    obj[k] = repl
                    changed = True
            else:
                v = obj[k]
                if type(v) is str and v.startswith(("{", "[")):  # JSON in a string value
                    inner = _json(v.encode("utf-8", "surrogatepass"), policy)
                    if inner is not None:
                        obj[k] = inner.decode("utf-8", "surrogatepass")
                        changed = True
        return obj

    # A string can only hold JSON if '"{' or '"[' is in the body (or escapes hide it).
    if b'"{' in body or b'"[' in body or b"\\u" in body or 0 in body[:4]:
        hook = nested_hook
    elif not scrub:
        fast = _json_fast(body, policy)
        if fast is not _SLOW:
            return fast

    try:
        doc = json.loads(body, object_hook=hook, parse_constant=str)
    except (ValueError, RecursionError):
        return _json_text(body, policy)  # truncated by the body cap, or not JSON after all
    if scrub:
        try:
            doc, c = _walk(doc, policy, 0)
        except RecursionError:
            return _json_text(body, policy)
        changed = changed or c
    if not changed:
        return None
    try:
        out = _JSON_OUT.encode(doc)
    except ValueError:  # a number too big for a float (1e999): keep it, as a string
        changed = False
        doc = json.loads(body, object_hook=hook, parse_constant=str, parse_float=_finite_float)
        if scrub:
            doc, _ = _walk(doc, policy, 0)
        out = json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
    try:
        return out.encode()
    except UnicodeEncodeError:  # lone surrogates (from \\ud800 escapes): keep them escaped
        return json.dumps(json.loads(out), separators=(",", ":")).encode()


_SLOW = b""  # _json_fast's answer when it cannot be sure: take the json module's path


class _NotExact(Exception):
    """A float in the document: orjson reads big integers as floats, and prints floats
    its own way, so only the json module's path gives the exact bytes."""


def _json_fast(body: bytes, policy: RedactionPolicy) -> bytes | None:
    """What `_json` makes of a body with no JSON inside its strings and no body patterns,
    parsed and printed by orjson (C, several times faster), or _SLOW when orjson does not
    read or print it exactly as the json module would (NaN, a BOM, surrogates, floats,
    deep nesting: it refuses those, or `_redact_keys` does)."""
    try:
        doc = orjson.loads(body)
        if not _redact_keys(doc, policy.matches, policy._cache, policy.replacement):
            return None
        # As json.dumps(ensure_ascii=False, separators=(",", ":")) but for floats, which
        # never get here; it refuses to nest as deep as orjson.loads does.
        return orjson.dumps(doc)
    except (orjson.JSONDecodeError, orjson.JSONEncodeError, _NotExact, RecursionError):
        return _SLOW


def _redact_keys(o: object, matches: Callable, known: dict, repl: str) -> bool:
    """Replace the values of matching keys in place, as `_json`'s hook does; True when
    something changed. Raises _NotExact at a float."""
    changed = False
    if type(o) is dict:
        for k, v in o.items():  # values are replaced, never keys added: safe while iterating
            hit = known.get(k)
            if hit is None:
                hit = matches(k)
            if hit:
                if v != repl:
                    o[k] = repl
                    changed = True
            elif type(v) is dict or type(v) is list:
                changed = _redact_keys(v, matches, known, repl) or changed
            elif type(v) is float:
                raise _NotExact
    elif type(o) is list:
        for v in o:
            if type(v) is dict or type(v) is list:
                changed = _redact_keys(v, matches, known, repl) or changed
            elif type(v) is float:
                raise _NotExact
    elif type(o) is float:
        raise _NotExact
    return changed


def _patterns_may_hit(body: bytes, policy: RedactionPolicy) -> bool:
    """Can a user pattern match a string of this JSON? Its strings are pieces of the raw
    UTF-8 body unless escapes, another encoding or anchors (^, $) are in play."""
    if b"\\" in body or 0 in body[:4] or policy._anchored:
        return True
    return any(rx.search(body) is not None for rx in policy._body_rx)


# json.dumps(doc, ensure_ascii=False, separators=(",", ":"), allow_nan=False), built once
_JSON_OUT = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
# One JSON token: a string (its closing quote missing when the body was cut inside it),
# a structural character, or a run of anything else (numbers, literals, junk). Linear:
# the alternatives start with different bytes and no repeated part can match what
# follows it.
_JSON_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"?|[{}\[\]:,]|[^\s{}\[\]:,"]+', re.S)


def _json_text(body: bytes, policy: RedactionPolicy) -> bytes | None:
    """JSON that does not parse (cut by the body cap, several documents, a misleading type):
    one pass over its tokens; a string followed by ``:`` is a key, and the whole value of a
    matching key - a scalar, or an object or array up to its end or the body's - becomes
    the replacement. Then the body regexes."""
    quoted = json.dumps(policy.replacement, ensure_ascii=False).encode("utf-8", "surrogateescape")
    tokens = _JSON_TOKEN.finditer(body)
    pieces: list[bytes] = []
    pos = 0
    key = b""  # the last string token: a key if ":" comes next
    matches = policy.matches
    for m in tokens:
        tok = m.group()
        if tok == b":":
            if not key or not matches(_json_key(key)):
                key = b""
                continue
            key = b""
            value = next(tokens, None)
            while value is not None and value.group() == b":":  # "key" : : value (garbled)
                value = next(tokens, None)
            if value is None:
                break
            first = value.group()
            start = value.start()
            end = value.end()
            if first in (b",", b"}", b"]"):
                continue  # no value: nothing to hide
            if first in (b"{", b"["):
                depth = 1
                for inner in tokens:
                    t = inner.group()
                    if t in (b"{", b"["):
                        depth += 1
                    elif t in (b"}", b"]"):
                        depth -= 1
                        if depth == 0:
                            break
                end = inner.end() if depth == 0 else len(body)
            elif first == quoted:
                continue
            pieces.append(body[pos:start])
            pieces.append(quoted)
            pos = end
        elif tok[:1] == b'"':
            key = tok
        else:
            key = b""
    if pieces:
        pieces.append(body[pos:])
        text = b"".join(pieces).decode("utf-8", "surrogateescape")
        return _text(text, policy, changed=True)
    if not policy._body_rx:
        return None
    return _text(body.decode("utf-8", "surrogateescape"), policy, changed=False)


def _json_key(token: bytes) -> str:
    inner = token[1:-1] if len(token) > 1 and token.endswith(b'"') else token[1:]
    if b"\\" in inner:
        try:
            return json.loads(b'"' + inner + b'"')
        except ValueError:
            pass
    return inner.decode("utf-8", "surrogateescape")


_MAX_DEPTH = 200


def _walk(o: object, policy: RedactionPolicy, depth: int) -> tuple[object, bool]:
    if isinstance(o, dict):
        changed = False
        out = {}
        for k, v in o.items():
            if policy.matches(k):
                out[k] = policy.replacement
                changed = changed or v != policy.replacement
            elif depth < _MAX_DEPTH and isinstance(v, (dict, list, str)):
                nv, c = _walk(v, policy, depth + 1)
                out[k] = nv
                changed = changed or c
            else:
                out[k] = v
        return (out if changed else o), changed
    if isinstance(o, list):
        changed = False
        items = []
        for v in o:
            if depth < _MAX_DEPTH and isinstance(v, (dict, list, str)):
                v, c = _walk(v, policy, depth + 1)
                changed = changed or c
            items.append(v)
        return (items if changed else o), changed
    if isinstance(o, str) and policy._body_rx:
        s = o
        data, hit = _scrub(s.encode("utf-8", "surrogatepass"), policy)
        if hit:
            try:
                s = data.decode("utf-8", "surrogatepass")
            except UnicodeDecodeError:  # a pattern split a lone surrogate's bytes
                s = data.decode("utf-8", "surrogateescape")
        return s, s != o
    return o, False


# A tag; its quoted values may hold ">" but not "<" (XML forbids it), so every attempt
# stops at the next "<" and no text is scanned twice: linear.
_XML_TAG = re.compile(r"<(/?)([A-Za-z_][\w.:-]*)((?:[^<>\"']|\"[^\"<]*\"|'[^'<]*')*?)(/?)>")
# name="value", name='value' or HTML's name=value; a quote may be missing at a cut-off end.
_XML_ATTR = re.compile(r"""(?<![\w.:-])([\w.:-]+)(\s*=\s*)("[^"]*"?|'[^']*'?|[^\s"'<>=/]+)""")
# A start tag cut off by the body cap (no ">" yet).
_XML_OPEN_TAIL = re.compile(r"<([A-Za-z_][\w.:-]*)([^<>]*)\Z")


# HTML names a field with an attribute and holds its value in another:
# <input name="csrf_token" value="...">, <meta name="api-key" content="...">.
_NAMING_ATTRS = frozenset({"name", "id", "property"})
_VALUE_ATTRS = frozenset({"value", "content"})


def _xml_attrs(attrs: str, every: bool, policy: RedactionPolicy) -> str | None:
    """Attribute values replaced: those with a matching name, the value of an element
    named like a field, or `every` one (inside a matching element). None when
    unchanged."""
    repl = policy.replacement
    changed = False
    named = not every and any(
        m[1].lower() in _NAMING_ATTRS and policy.matches(m[3].strip("\"'"))
        for m in _XML_ATTR.finditer(attrs)
    )

    def value(m: re.Match[str]) -> str:
        nonlocal changed
        name, eq, quoted = m.groups()
        local = name.rpartition(":")[2]
        if not (every or policy.matches(local) or (named and local.lower() in _VALUE_ATTRS)):
            return m.group(0)
        q = quoted[0] if quoted[0] in "\"'" else '"'
        if quoted == q + repl + q:
            return m.group(0)
        changed = True
        return f"{name}{eq}{q}{repl}{q}"

    new = _XML_ATTR.sub(value, attrs)
    return new if changed else None


def _xml(text: str, policy: RedactionPolicy) -> str | None:
    """Replace the text inside elements whose (local) tag name matches, their attributes,
    and attributes whose name matches. One linear pass over the tags with a stack, so
    malformed or hostile XML costs no more than valid XML."""
    out: list[str] = []
    stack: list[tuple[str, bool]] = []
    inside = 0  # open elements that match
    pos = 0
    changed = False
    repl = policy.replacement
    for m in _XML_TAG.finditer(text):
        start = m.start()
        if start > pos:
            seg = text[pos:start]
            if inside and seg.strip() and seg != repl:
                out.append(repl)
                changed = True
            else:
                out.append(seg)
        pos = m.end()
        closing, name, attrs, selfclosing = m.groups()
        hit = not closing and policy.matches(name.rpartition(":")[2])
        new_attrs = _xml_attrs(attrs, inside > 0 or hit, policy) if "=" in attrs else None
        if new_attrs is None:
            out.append(m.group(0))
        else:
            out.append(f"<{closing}{name}{new_attrs}{selfclosing}>")
            changed = True
        if closing:
            for k in range(len(stack) - 1, -1, -1):
                if stack[k][0] == name:
                    inside -= sum(1 for _, h in stack[k:] if h)
                    del stack[k:]
                    break
        elif not selfclosing:
            stack.append((name, hit))
            inside += hit
            if len(stack) > 10_000:
                return None
    rest = text[pos:]
    if inside and rest.strip() and rest != repl:  # cut off inside a matching element
        rest = repl
        changed = True
    else:
        tail = _XML_OPEN_TAIL.search(rest)
        if tail is not None:  # cut off inside a start tag
            name, attrs = tail.groups()
            hit = policy.matches(name.rpartition(":")[2])
            new_attrs = _xml_attrs(attrs, inside > 0 or hit, policy)
            if new_attrs is not None:
                rest = rest[: tail.start(2)] + new_attrs
                changed = True
    if not changed:
        return None
    out.append(rest)
    return "".join(out)
