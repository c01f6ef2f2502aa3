"""The `redact` stage: hide secrets and personal data in an `ApiCall` before it leaves the
stream layer. Pure: `redact(call, policy) -> ApiCall`.

A header, query parameter, cookie, JSON key, form field or XML tag is redacted when its
name - lower-cased, with ``-``, ``_`` and spaces removed - contains one of the policy's
field substrings (defaults from Mizu, see REFERENCE.md). The list is applied literally:
``user`` also hides ``User-Agent``, ``cookie`` hides whole ``Cookie`` / ``Set-Cookie``
headers. User regexes replace matches in text bodies (and in JSON string values, XML and
form bodies). Bodies are only touched when their Content-Type says they are text;
everything else (images, protobuf, octet-stream, unknown) is left alone.

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
from dataclasses import dataclass, field
from dataclasses import fields as dataclass_fields
from operator import attrgetter
from pathlib import Path
from urllib.parse import unquote_plus

import yaml

from wiretide.records import ApiCall, Headers, record_maker

REPLACEMENT = "[REDACTED]"
DEFAULT_FIELDS: tuple[str, ...] = (
    "token", "authorization", "authentication", "cookie", "userid", "password", "username",
    "user", "key", "passcode", "pass", "auth", "authtoken", "jwt", "bearer", "clientid",
    "clientsecret", "redirecturi", "phonenumber", "zip", "zipcode", "address", "country",
    "firstname", "lastname", "middlename", "fname", "lname", "birthdate",
)  # fmt: skip
_YAML_KEYS = ("fields", "replace_defaults", "patterns", "replacement")
_NAME_CACHE_MAX = 4096


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
    _body_rx: tuple[re.Pattern[str], ...] = field(init=False, repr=False, compare=False, default=())
    _cache: dict[str, bool] = field(init=False, repr=False, compare=False, default_factory=dict)
    # Finds (a superset of) matching XML tags in one C-level pass, so most XML is left alone.
    _xml_rx: re.Pattern[str] | None = field(init=False, repr=False, compare=False, default=None)
    # The same for JSON keys (ASCII bodies without escapes only), so most JSON is not parsed.
    _json_rx: re.Pattern[bytes] | None = field(init=False, repr=False, compare=False, default=None)
    # header name -> what to do with it (see _header_code); raw query name -> matches?
    _header_codes: dict[str, int] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )
    _query_cache: dict[str, bool] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        fields = tuple(dict.fromkeys(f for f in (normalize(x) for x in self.fields) if f))
        object.__setattr__(self, "fields", fields)
        rx = re.compile("|".join(map(re.escape, fields))) if fields else None
        object.__setattr__(self, "_field_rx", rx)
        if fields:
            alts = "|".join("[-_.]*".join(map(re.escape, f)) for f in fields)
            object.__setattr__(self, "_xml_rx", re.compile(rf"<[\w.:-]*?(?:{alts})", re.I))
            ascii_alts = b"|".join(
                b"[-_ ]*".join(re.escape(bytes([c])) for c in f.encode())
                for f in fields
                if f.isascii()
            )
            if ascii_alts:
                object.__setattr__(self, "_json_rx", re.compile(ascii_alts, re.I))
        compiled = []
        for p in self.patterns:
            try:
                compiled.append(re.compile(p))
            except re.error as e:
                raise ValueError(f"bad redaction regex {p!r}: {e}") from None
        object.__setattr__(self, "_body_rx", tuple(compiled))

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
                    try:
                        re.compile(p)
                    except re.error as e:
                        raise ValueError(
                            f"{path}:{_line(item)}: bad regex {p!r}: {e.msg}"
                        ) from None
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
    if req_ctype and call.request_body:
        req_body = _body(call.request_body, req_ctype, policy)
    if resp_ctype and call.response_body:
        resp_body = _body(call.response_body, resp_ctype, policy)
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


def _headers(headers: Headers, policy: RedactionPolicy) -> tuple[Headers | None, str]:
    """(redacted headers or None if unchanged, the Content-Type value)."""
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


def _query(text: str, policy: RedactionPolicy) -> str | None:
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


def _body(body: bytes, ctype: str, policy: RedactionPolicy) -> bytes | None:
    mime = ctype.partition(";")[0].strip().lower()
    if "json" in mime:
        return _json(body, policy)
    if mime == "application/x-www-form-urlencoded":
        text = body.decode("utf-8", "surrogateescape")
        new = _pairs(text, policy)
        return _text(new if new is not None else text, policy, changed=new is not None)
    if "xml" in mime:
        text = body.decode("utf-8", "surrogateescape")
        rx = policy._xml_rx
        new = _xml(text, policy) if rx is not None and rx.search(text) else None
        return _text(new if new is not None else text, policy, changed=new is not None)
    if mime.startswith("text/"):
        if not policy._body_rx:
            return None
        return _text(body.decode("utf-8", "surrogateescape"), policy, changed=False)
    return None


def _text(text: str, policy: RedactionPolicy, changed: bool) -> bytes | None:
    """Apply the body regexes; the new bytes, or None when nothing changed at all."""
    for rx in policy._body_rx:
        text, n = rx.subn(policy.replacement, text)
        changed = changed or n > 0
    return text.encode("utf-8", "surrogateescape") if changed else None


def _finite_float(s: str) -> float | str:
    f = float(s)
    return f if math.isfinite(f) else s  # 1e999 would not survive a round trip as JSON


def _json(body: bytes, policy: RedactionPolicy) -> bytes | None:
    """Parse (C), replace the values of matching keys while objects are built (one hook call
    per object, no second walk), and serialize again only when something changed."""
    if not policy._body_rx and body.isascii() and b"\\" not in body and 0 not in body[:4]:
        # Keys are then plain ASCII text in the body (UTF-8; a NUL up front would make
        # json.loads read UTF-16/32): if no field can be spelled anywhere in it (any case,
        # any "-", "_" or " " in between), no key matches.
        rx = policy._json_rx
        if rx is None or rx.search(body) is None:
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

    try:
        doc = json.loads(body, object_hook=hook, parse_constant=str)
    except (ValueError, RecursionError):
        return _json_text(body, policy)  # truncated by the body cap, or not JSON after all
    if policy._body_rx:
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
        if policy._body_rx:
            doc, _ = _walk(doc, policy, 0)
        out = json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
    try:
        return out.encode()
    except UnicodeEncodeError:  # lone surrogates (from \\ud800 escapes): keep them escaped
        return json.dumps(json.loads(out), separators=(",", ":")).encode()


# json.dumps(doc, ensure_ascii=False, separators=(",", ":"), allow_nan=False), built once
_JSON_OUT = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
_JSON_KEY = re.compile(r'"([^"\\]*(?:\\.[^"\\]*)*)"\s*:')
_JSON_VALUE = r'"[^"\\]*(?:\\.[^"\\]*)*(?:"|$)|-?[0-9][0-9.eE+-]*|true|false|null'


def _json_text(body: bytes, policy: RedactionPolicy) -> bytes | None:
    """JSON that does not parse (cut by the body cap): replace the values of matching
    `"key": scalar` pairs in the text, then apply the body regexes."""
    text = body.decode("utf-8", "surrogateescape")
    keys = {k for k in _JSON_KEY.findall(text) if policy.matches(k)}
    new = text
    if keys:
        names = "|".join(map(re.escape, sorted(keys, key=len, reverse=True)))
        pair = re.compile(rf'("(?:{names})"\s*:\s*)(?:{_JSON_VALUE})', re.S)
        quoted = '"' + policy.replacement.replace("\\", "\\\\").replace('"', '\\"') + '"'
        new = pair.sub(lambda m: m.group(1) + quoted, text)
    return _text(new, policy, changed=new != text)


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
        for rx in policy._body_rx:
            s = rx.sub(policy.replacement, s)
        return s, s != o
    return o, False


_XML_TAG = re.compile(r"<(/?)([A-Za-z_][\w.:-]*)((?:[^<>\"']|\"[^\"]*\"|'[^']*')*?)(/?)>")


def _xml(text: str, policy: RedactionPolicy) -> str | None:
    """Replace the text inside elements whose (local) tag name matches. One linear pass over
    the tags with a stack, so malformed or hostile XML costs no more than valid XML."""
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
        out.append(m.group(0))
        pos = m.end()
        closing, name, _, selfclosing = m.groups()
        if closing:
            for k in range(len(stack) - 1, -1, -1):
                if stack[k][0] == name:
                    inside -= sum(1 for _, hit in stack[k:] if hit)
                    del stack[k:]
                    break
        elif not selfclosing:
            hit = policy.matches(name.rpartition(":")[2])
            stack.append((name, hit))
            inside += hit
            if len(stack) > 10_000:
                return None
    rest = text[pos:]
    if inside and rest.strip() and rest != repl:  # cut off inside a matching element
        rest = repl
        changed = True
    if not changed:
        return None
    out.append(rest)
    return "".join(out)
