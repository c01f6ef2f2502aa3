"""What a stored call becomes on the wire: target mapping, safety, secrets, rewrites and
the replay mark. Sans-IO: `plan(call, options)` is a `SentRequest` or a `Skip` saying why
the call is not sent.

Secrets: stored calls were redacted (`[REDACTED]`), so a value the capture hid must be
filled in (`--set-header`, `--set-query`, `--secrets`) or the call is skipped, unless
`--send-redacted`. Host, `:authority` and User-Agent are the client's own and are replaced,
so a redacted one never stops a call.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote_plus

from schemas.records import ApiCall
from streams.rules.jsonpath import WILDCARD, JsonPath
from wiretide.replay import grpcwire
from wiretide.replay.model import SentRequest
from wiretide.replay.targets import Target, route

REDACTED = "[REDACTED]"
MARK_HEADER = "x-wiretide-replay"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
PROTOCOLS = ("http", "http2", "grpc", "gql", "redis")
# Redis commands that only read: sent without --allow-methods.
REDIS_READS = frozenset(
    """GET MGET EXISTS TTL PTTL TYPE STRLEN GETRANGE HGET HMGET HGETALL HKEYS HVALS HLEN
    HEXISTS HSTRLEN LRANGE LLEN LINDEX LPOS SMEMBERS SISMEMBER SMISMEMBER SCARD SRANDMEMBER
    ZRANGE ZRANGEBYSCORE ZRANGEBYLEX ZREVRANGE ZSCORE ZMSCORE ZCARD ZCOUNT ZRANK ZREVRANK
    XRANGE XREVRANGE XLEN SCAN SSCAN HSCAN ZSCAN KEYS DBSIZE PING ECHO TIME BITCOUNT GETBIT
    PFCOUNT GEOPOS GEODIST OBJECT MEMORY""".split()
)
# Commands that change what the connection does next (transactions, pub/sub, protocol,
# database): their effect needs the recorded connection to itself, which pooled sending
# does not keep; not replayed.
REDIS_STATEFUL = frozenset(
    """MULTI EXEC DISCARD WATCH UNWATCH SUBSCRIBE PSUBSCRIBE SSUBSCRIBE UNSUBSCRIBE
    PUNSUBSCRIBE SUNSUBSCRIBE HELLO AUTH SELECT RESET MONITOR QUIT""".split()
)
# Not sent as recorded: the connection's own (hop-by-hop), what the client recomputes
# (length, host), and what the dissector added (graphql-operation-*).
_DROPPED = frozenset(
    {
        "host",
        ":authority",
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "content-encoding",  # bodies are stored decoded
        "grpc-encoding",  # gRPC messages are sent uncompressed
        "http2-settings",
        "graphql-operation-name",
        "graphql-operation-type",
    }
)
_CLIENT_OWN = frozenset({"user-agent"})  # a redacted one is left out, not a skip
_CUT_FLAGS = ("request_truncated", "grpc_message_cut", "gap", "malformed")


@dataclass(frozen=True, slots=True)
class Options:
    targets: tuple[Target, ...]
    run_id: str = ""
    mark: bool = True
    allow_methods: frozenset[str] = SAFE_METHODS
    set_headers: tuple[tuple[str, str], ...] = ()
    drop_headers: frozenset[str] = frozenset()
    set_query: tuple[tuple[str, str], ...] = ()
    secrets: tuple[tuple[str, str], ...] = ()  # fill [REDACTED] headers, query, JSON keys
    path_prefix: tuple[tuple[str, str], ...] = ()
    set_json: tuple[tuple[JsonPath, Any], ...] = ()
    send_redacted: bool = False


@dataclass(frozen=True, slots=True)
class Skip:
    reason: str  # grouped in the summary, e.g. "[REDACTED] in authorization"
    hint: str = ""  # what would send it, e.g. "give --set-header"


@dataclass(frozen=True, slots=True)
class _Parts:
    headers: list[tuple[str, str]] = field(default_factory=list)
    query: str = ""
    body: bytes = b""


def plan(call: ApiCall, opts: Options) -> SentRequest | Skip:
    if call.protocol not in PROTOCOLS:
        return Skip(f"protocol {call.protocol} is not replayed", "select http, http2, grpc, gql")
    if any(flag in _CUT_FLAGS for flag in call.flags):
        return Skip("request incomplete in the capture")
    origin = route(call, opts.targets)
    if origin is None:
        kind = "redis://HOST:PORT" if call.protocol == "redis" else "URL"
        return Skip(f"no --target for its destination ({call.protocol})", f"add --target {kind}")
    if call.protocol == "redis":
        return _plan_redis(call, opts, origin.url("", ""))
    refused = _refused(call, opts)
    if refused is not None:
        return refused
    try:
        parts = _parts(call, opts)
    except (grpcwire.NotReplayable, ValueError) as ex:
        return Skip(f"body not replayable ({ex})")
    if not opts.send_redacted:
        where = _redacted_in(parts)
        if where:
            return Skip(f"[REDACTED] in {where}", _hint(where))
    h2 = call.protocol in ("http2", "grpc") or call.request_version == "HTTP/2"
    version = "2" if h2 else "1.1"
    path = _rewrite_path(call.path or "/", opts.path_prefix)
    headers = [(":authority" if version == "2" else "host", origin.authority), *parts.headers]
    return SentRequest(
        method=call.method or "GET",
        url=origin.url(path, parts.query),
        headers=tuple(headers),
        body=parts.body,
        http_version=version,
    )


def _plan_redis(call: ApiCall, opts: Options, url: str) -> SentRequest | Skip:
    """A Redis command from its stored JSON arguments, as a RESP array."""
    command = call.method.upper()
    if "push" in call.flags:
        return Skip("Redis server push (not a request)")
    if command in REDIS_STATEFUL:
        return Skip(f"Redis {command} changes the connection's state (not replayed)")
    if command not in REDIS_READS and command not in opts.allow_methods:
        return Skip(f"Redis {command} is not a read", f"give --allow-methods {command}")
    try:
        args = json.loads(call.request_body) if call.request_body.strip() else []
        parts = [command.encode(), *(_redis_arg(a) for a in args)]
    except (ValueError, TypeError, KeyError):
        return Skip("request incomplete in the capture")
    if not opts.send_redacted and any(p == REDACTED.encode() for p in parts):
        return Skip("[REDACTED] in Redis arguments", "give --send-redacted to send it as is")
    resp = b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)
    return SentRequest(command, url, body=resp, http_version="resp")


def _redis_arg(value: Any) -> bytes:
    """A stored argument: text, or {"base64": ...} for bytes; a cut one raises."""
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, dict) and set(value) == {"base64"}:
        return base64.b64decode(value["base64"])
    raise ValueError("argument cut by the capture")


def _refused(call: ApiCall, opts: Options) -> Skip | None:
    method = (call.method or "GET").upper()
    if call.protocol == "grpc" or method in opts.allow_methods:
        return None
    if call.protocol == "gql":
        op = dict(call.request_headers).get("graphql-operation-type", "")
        if op == "query":
            return None
        return Skip(f"GraphQL {op or 'operation'} ({method})", f"give --allow-methods {method}")
    return Skip(f"method {method} not allowed", f"give --allow-methods {method}")


def _parts(call: ApiCall, opts: Options) -> _Parts:
    secrets = {name.lower(): value for name, value in opts.secrets}
    drop = _DROPPED | opts.drop_headers
    setting = {name.lower() for name, _ in opts.set_headers}
    headers = []
    for name, value in call.request_headers:
        low = name.lower()
        if low in drop or low in setting or (low.startswith(":") and low != ":authority"):
            continue
        if value == REDACTED and low in secrets:
            value = secrets[low]
        if value == REDACTED and low in _CLIENT_OWN:
            continue
        headers.append((low, value))
    headers += [(name.lower(), value) for name, value in opts.set_headers]
    if opts.mark and opts.run_id:
        headers = [h for h in headers if h[0] != MARK_HEADER] + [(MARK_HEADER, opts.run_id)]
    query = _rewrite_query(call.query, opts.set_query, secrets)
    body = _body(call, opts, secrets)
    return _Parts(headers, query, body)


def _body(call: ApiCall, opts: Options, secrets: dict[str, str]) -> bytes:
    body = call.request_body
    if secrets and _is_form(call):
        return _rewrite_query(body.decode("latin-1"), (), secrets).encode("latin-1")
    if opts.set_json or secrets:
        body = _rewrite_json(body, opts.set_json, secrets, call.protocol == "grpc")
    if call.protocol == "grpc":
        return grpcwire.request_body(body)
    return body


def _is_form(call: ApiCall) -> bool:
    for name, value in call.request_headers:
        if name.lower() == "content-type":
            return value.lower().startswith("application/x-www-form-urlencoded")
    return False


# ------------------------------------------------------------------------- rewrites
def _rewrite_path(path: str, prefixes: tuple[tuple[str, str], ...]) -> str:
    for old, new in prefixes:
        if path.startswith(old):
            return new + path[len(old) :]
    return path


def _rewrite_query(
    query: str, settings: tuple[tuple[str, str], ...], secrets: dict[str, str]
) -> str:
    """Set (replace or add) parameters, fill redacted ones from secrets; others untouched."""
    pairs = [p.partition("=") for p in query.split("&")] if query else []
    out = []
    pending = dict(settings)
    for name, sep, value in pairs:
        key = unquote_plus(name)
        if key in pending:
            out.append(f"{name}={quote(pending.pop(key), safe='')}")
        elif value == REDACTED and key.lower() in secrets:
            out.append(f"{name}={quote(secrets[key.lower()], safe='')}")
        else:
            out.append(f"{name}{sep}{value}")
    out += [f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in pending.items()]
    return "&".join(out)


def _rewrite_json(
    body: bytes, settings: tuple[tuple[JsonPath, Any], ...], secrets: dict[str, str], must: bool
) -> bytes:
    try:
        doc = json.loads(body) if body.strip() else None
    except ValueError:
        doc = None
    if doc is None:
        if settings and must:
            raise ValueError("not JSON, so --set-json cannot apply")
        return body
    before = doc
    for path, value in settings:
        doc = set_path(doc, path, value)
    if secrets:
        doc = _fill_secrets(doc, secrets)
    if doc == before:
        return body  # the recorded bytes, not a reformatted copy
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()


def set_path(doc: Any, path: JsonPath, value: Any) -> Any:
    """`doc` with every place `path` reaches set to `value` (a missing last key is added)."""
    if not path.steps:
        return value
    return _set(doc, path.steps, value)


def _set(node: Any, steps: tuple[object, ...], value: Any) -> Any:
    step, rest = steps[0], steps[1:]
    if step is WILDCARD:
        if isinstance(node, dict):
            return {k: _set(v, rest, value) if rest else value for k, v in node.items()}
        if isinstance(node, list):
            return [_set(v, rest, value) if rest else value for v in node]
        return node
    if isinstance(step, int) and isinstance(node, list) and step < len(node):
        copy = list(node)
        copy[step] = _set(node[step], rest, value) if rest else value
        return copy
    if isinstance(step, str) and isinstance(node, dict):
        if rest and step not in node:
            return node
        copy = dict(node)
        copy[step] = _set(node[step], rest, value) if rest else value
        return copy
    return node


def _fill_secrets(node: Any, secrets: dict[str, str]) -> Any:
    if isinstance(node, dict):
        return {
            k: secrets[k.lower()]
            if v == REDACTED and k.lower() in secrets
            else _fill_secrets(v, secrets)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_fill_secrets(v, secrets) for v in node]
    return node


# -------------------------------------------------------------------------- secrets
def _redacted_in(parts: _Parts) -> str:
    """Where a [REDACTED] value would go out: a header's name, `query NAME`, or `body`."""
    for name, value in parts.headers:
        if REDACTED in value:
            return name
    for pair in parts.query.split("&") if parts.query else ():
        name, _, value = pair.partition("=")
        if REDACTED in unquote_plus(value) or REDACTED in value:
            return f"query {unquote_plus(name)}"
    if REDACTED.encode() in parts.body:
        return "body"
    return ""


def _hint(where: str) -> str:
    if where.startswith("query "):
        return f"give --set-query {where[6:]}=VALUE or --secrets FILE"
    if where == "body":
        return "give --set-json PATH=VALUE or --secrets FILE"
    return f"give --set-header {where}=VALUE or --secrets FILE"
