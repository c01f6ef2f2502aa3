"""Comparing a replayed answer with the recorded one. Pure: exchanges in, verdicts out.

* status: HTTP status; for gRPC the recorded `status` is the grpc-status code, so the
  replayed side's `grpc-status` (headers or trailers) is what it is compared with;
* headers: by lower-cased name (repeats joined with ", "), minus the ones every answer
  changes or the transport decides (`IGNORED_HEADERS`) and pseudo-headers;
* bodies: JSON structurally (key order and spacing do not matter; each difference names
  its JSON path), gRPC messages through the same JSON view of protobuf the dissector
  stored, anything else byte for byte;
* `[REDACTED]` in the recording (a header value or a JSON string) matches anything: the
  recording cannot say what was there;
* a recording cut at the body cap (`response_truncated`) is compared as a prefix.

Volatile fields (timestamps, request ids, random values) are learned by replaying the
same calls twice (`learn_volatile`): what differs between the two answers is noise, and
`compare` skips it for that endpoint.
"""

from __future__ import annotations

import gzip
import json
import math
import re
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from schemas.records import ApiCall
from streams.dissect import grpc
from streams.redact import REPLACEMENT
from wiretide.replay.model import Difference, Exchange, ReplayedResponse, Verdict

# Headers that say when/who/how-sent rather than what: never a change.
IGNORED_HEADERS = frozenset(
    {
        "date", "server", "content-length", "connection", "keep-alive", "etag",
        "last-modified", "x-request-id", "transfer-encoding", "age", "expires",
        "x-correlation-id", "x-trace-id", "traceparent", "tracestate", "via",
        "alt-svc", "content-encoding", "vary", "proxy-connection", "grpc-status",
        "grpc-message", "x-wiretide-replay", "grpc-accept-encoding", "grpc-encoding",
    }
)  # fmt: skip
MAX_DIFFERENCES = 50  # per call: a body rewritten wholesale says so without a flood
_SHOWN = 200  # characters of a value kept in a Difference
ABSENT = "(absent)"
_INDEX = re.compile(r"\[\d+\]")
ANY_ENDPOINT = "*"


@dataclass(frozen=True, slots=True)
class VolatileSet:
    """Places (`Difference.where`: "status", "header:<name>", "body:<path>", "body") whose
    differences are noise, per endpoint ("METHOD path", or ANY_ENDPOINT for every one).
    Array indices in body paths are stored as [*]."""

    entries: frozenset[tuple[str, str]] = frozenset()
    # Endpoints the learning replayed: for any other, a place volatile at some endpoint
    # is taken as volatile there too (a `served_at` is a timestamp wherever it appears).
    sampled: frozenset[str] = frozenset()

    def ignores(self, endpoint: str, where: str) -> bool:
        key = _INDEX.sub("[*]", where)
        if (endpoint, key) in self.entries or (ANY_ENDPOINT, key) in self.entries:
            return True
        return endpoint not in self.sampled and key in self._anywhere

    @property
    def _anywhere(self) -> frozenset[str]:
        return frozenset(w for _, w in self.entries)

    def union(self, other: VolatileSet) -> VolatileSet:
        return VolatileSet(self.entries | other.entries, self.sampled | other.sampled)

    def fields(self, endpoint: str) -> list[str]:
        return sorted(w for e, w in self.entries if e in (endpoint, ANY_ENDPOINT))


NOTHING_VOLATILE = VolatileSet()


def endpoint_of(call: ApiCall) -> str:
    return f"{call.method} {call.path}"


# --------------------------------------------------------------------------- compare


def compare(exchange: Exchange, volatile: VolatileSet = NOTHING_VOLATILE) -> Verdict:
    """matched, changed (with each difference) or failed (no answer)."""
    resp = exchange.response
    if resp is None:
        return Verdict("failed", (Difference("error", "", exchange.error or "no response"),))
    endpoint = endpoint_of(exchange.recorded)
    diffs = [
        d for d in differences(exchange.recorded, resp) if not volatile.ignores(endpoint, d.where)
    ]
    if not diffs:
        return Verdict("matched")
    return Verdict("changed", tuple(diffs[:MAX_DIFFERENCES]))


def differences(recorded: ApiCall, resp: ReplayedResponse) -> list[Difference]:
    """Every difference between a recorded answer and a replayed one, none ignored."""
    is_grpc = recorded.protocol == "grpc" or grpc.content_is_grpc(
        _header(resp.headers, "content-type")
    )
    out = []
    was, now = recorded.status, _replayed_status(resp, is_grpc)
    if was != now:
        out.append(Difference("status", str(was), str(now)))
    out += _header_differences(recorded.response_headers, resp.headers)
    truncated = "response_truncated" in recorded.flags
    out += body_differences(recorded.response_body, _replayed_body(resp, is_grpc), truncated)
    return out


def _replayed_status(resp: ReplayedResponse, is_grpc: bool) -> int:
    if is_grpc:
        code = _header(resp.headers, "grpc-status")
        return int(code) if code.isdigit() else resp.status
    return resp.status


def _replayed_body(resp: ReplayedResponse, is_grpc: bool) -> bytes:
    body = resp.body
    encoding = _header(resp.headers, "content-encoding").lower()
    if is_grpc:  # the same JSON view of the messages the dissector stored
        data, _ = grpc.body_json(body, _header(resp.headers, "grpc-encoding"), 1 << 24)
        return data
    try:  # a sender that handed over the body as it came, still compressed
        if encoding == "gzip" and body[:2] == b"\x1f\x8b":
            return gzip.decompress(body)
        if encoding == "deflate":
            return zlib.decompress(body)
    except (OSError, zlib.error, EOFError):
        pass
    return body


def _header(headers: Iterable[tuple[str, str]], name: str) -> str:
    return next((v for k, v in headers if k.lower() == name), "")


def _header_map(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    out: dict[str, list[str]] = {}
    for name, value in headers:
        key = name.lower()
        if key.startswith(":") or key in IGNORED_HEADERS:
            continue
        out.setdefault(key, []).append(value)
    return {k: ", ".join(v) for k, v in out.items()}


def _header_differences(
    recorded: Iterable[tuple[str, str]], replayed: Iterable[tuple[str, str]]
) -> list[Difference]:
    was, now = _header_map(recorded), _header_map(replayed)
    out = []
    for name in sorted(was.keys() | now.keys()):
        a, b = was.get(name, ABSENT), now.get(name, ABSENT)
        if a != b and not (REPLACEMENT in a and _redacted_match(a.encode(), b.encode())):
            out.append(Difference(f"header:{name}", _short(a), _short(b)))
    return out


# ----------------------------------------------------------------------------- bodies


def body_differences(recorded: bytes, replayed: bytes, truncated: bool = False) -> list[Difference]:
    if recorded == replayed:
        return []
    if truncated:  # the recording stops at the cap: only that much can be compared
        same = replayed[: len(recorded)] == recorded
        return [] if same else [Difference("body", _short_bytes(recorded), _short_bytes(replayed))]
    a, b = _json(recorded), _json(replayed)
    if a is _NOT_JSON or b is _NOT_JSON:
        if _REDACTED in recorded and _redacted_match(recorded, replayed):
            return []
        return [Difference("body", _short_bytes(recorded), _short_bytes(replayed))]
    out: list[Difference] = []
    _walk("$", a, b, out)
    return out


_NOT_JSON = object()
_REDACTED = REPLACEMENT.encode()


def _redacted_match(recorded: bytes, replayed: bytes) -> bool:
    """A text body redacted by pattern: the same bytes around each [REDACTED], which
    stands for anything."""
    # A glob with `*` only: first part a prefix, last a suffix, the middle ones found
    # leftmost in order between them (linear; a regex could backtrack for long).
    first, *middle, last = recorded.split(_REDACTED)
    if len(first) + len(last) > len(replayed):
        return False
    if not (replayed.startswith(first) and replayed.endswith(last)):
        return False
    at, end = len(first), len(replayed) - len(last)
    for part in middle:
        found = replayed.find(part, at, end)
        if found < 0:
            return False
        at = found + len(part)
    return True


def _json(body: bytes) -> Any:
    text = body.lstrip()[:1]
    if text not in (b"{", b"[", b'"') and not body.strip()[:1].isdigit():
        return _NOT_JSON
    try:
        return json.loads(body)
    except ValueError:
        return _NOT_JSON


def _walk(path: str, a: Any, b: Any, out: list[Difference]) -> None:
    if len(out) >= MAX_DIFFERENCES:
        return
    if isinstance(a, dict | list) and a == b and repr(a) == repr(b):
        return  # the same, in C: == alone takes true for 1, which repr tells apart
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(a.keys() | b.keys()):
            sub = _key_path(path, key)
            if key not in a:
                out.append(Difference(f"body:{sub}", ABSENT, _short_json(b[key])))
            elif key not in b:
                out.append(Difference(f"body:{sub}", _short_json(a[key]), ABSENT))
            else:
                _walk(sub, a[key], b[key], out)
    elif isinstance(a, list) and isinstance(b, list):
        for k in range(max(len(a), len(b))):
            sub = f"{path}[{k}]"
            if k >= len(a):
                out.append(Difference(f"body:{sub}", ABSENT, _short_json(b[k])))
            elif k >= len(b):
                out.append(Difference(f"body:{sub}", _short_json(a[k]), ABSENT))
            else:
                _walk(sub, a[k], b[k], out)
    elif not _same_leaf(a, b):
        out.append(Difference(f"body:{path}", _short_json(a), _short_json(b)))


def _same_leaf(a: Any, b: Any) -> bool:
    if isinstance(a, str) and REPLACEMENT in a:
        return _redacted_match(a.encode(), b.encode()) if isinstance(b, str) else False
    if type(a) is not type(b) and not (_number(a) and _number(b)):
        return False  # 1 and true are different answers
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def _number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _key_path(path: str, key: str) -> str:
    return f"{path}.{key}" if _PLAIN_KEY.match(key) else f"{path}[{json.dumps(key)}]"


def _short(text: str) -> str:
    return text if len(text) <= _SHOWN else text[: _SHOWN - 1] + "…"


def _short_json(value: Any) -> str:
    return _short(json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":")))


def _short_bytes(body: bytes) -> str:
    return _short(body.decode("utf-8", "backslashreplace"))


# ---------------------------------------------------------------------------- volatile


def learn_volatile(first: Iterable[Exchange], second: Iterable[Exchange]) -> VolatileSet:
    """Replays of the same calls, twice: every place whose answer differed between the two
    is volatile for that call's endpoint. Exchanges pair up by (call id, copy); a call
    answered only once teaches nothing."""
    earlier = {(x.recorded.call_id, x.copy): x for x in first if x.response is not None}
    entries: set[tuple[str, str]] = set()
    sampled: set[str] = set()
    for x in second:
        y = earlier.get((x.recorded.call_id, x.copy))
        if y is None or x.response is None or y.response is None:
            continue
        as_recorded = _as_recording(y.recorded, y.response)
        endpoint = endpoint_of(x.recorded)
        sampled.add(endpoint)
        for d in differences(as_recorded, x.response):
            entries.add((endpoint, _INDEX.sub("[*]", d.where)))
    return VolatileSet(frozenset(entries), frozenset(sampled))


def _as_recording(call: ApiCall, resp: ReplayedResponse) -> ApiCall:
    """A replayed answer in the shape of a recorded one, to diff two answers."""
    from dataclasses import replace

    is_grpc = call.protocol == "grpc" or grpc.content_is_grpc(_header(resp.headers, "content-type"))
    return replace(
        call,
        status=_replayed_status(resp, is_grpc),
        response_headers=resp.headers,
        response_body=_replayed_body(resp, is_grpc),
        flags=(),
    )


# ----------------------------------------------------------------------------- latency


@dataclass(frozen=True, slots=True)
class Percentiles:
    count: int
    p50_ns: int
    p95_ns: int
    p99_ns: int


@dataclass(frozen=True, slots=True)
class Latency:
    recorded: Percentiles
    replayed: Percentiles


QUANTILES = (0.5, 0.95, 0.99)


def percentiles(values: Sequence[int]) -> Percentiles:
    """Nearest-rank percentiles (each is a value that was measured); zeros when empty."""
    ordered = sorted(values)
    if not ordered:
        return Percentiles(0, 0, 0, 0)
    picks = [ordered[max(0, math.ceil(q * len(ordered)) - 1)] for q in QUANTILES]
    return Percentiles(len(ordered), *picks)


def latency(exchanges: Iterable[Exchange]) -> Latency:
    """p50/p95/p99 of the recorded calls' latency (request to first answer byte) and of
    the replayed ones', over the exchanges that have one."""
    was, now = [], []
    for x in exchanges:
        if x.recorded.elapsed_ns >= 0:
            was.append(x.recorded.elapsed_ns)
        if x.response is not None:
            now.append(x.response.latency_ns)
    return Latency(percentiles(was), percentiles(now))
