"""What one replayed call is: the contract between the sender (select, plan, pace, send)
and the comparison (diff, results, report). Pure data; no IO.

A run replays stored calls (`ApiCall`, as `sinks.clickhouse.reader` returns them) at a
target. Each copy of each call becomes one `Exchange`: the request as sent, and the
answer or the reason there was none. `diff.compare` turns an exchange into a `Verdict`;
the results writer stores both.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from schemas.records import ApiCall

Headers = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class SentRequest:
    """The request as it went out, after target mapping, rewrites and secrets."""

    method: str  # HTTP method, or the gRPC/GraphQL operation's HTTP method (POST)
    url: str  # absolute: scheme://host:port/path?query
    headers: Headers = ()
    body: bytes = b""
    http_version: str = "1.1"  # "1.1" | "2"


@dataclass(frozen=True, slots=True)
class ReplayedResponse:
    status: int  # HTTP status; for gRPC the HTTP status, with grpc-status in headers/trailers
    headers: Headers = ()
    body: bytes = b""
    latency_ns: int = 0  # request sent -> first byte of the answer


@dataclass(frozen=True, slots=True)
class Exchange:
    """One copy of one recorded call, sent again. `response` is None when `error` says why
    (connect refused, timeout, protocol error): such an exchange is `failed`."""

    run_id: str
    recorded: ApiCall
    copy: int  # 0 .. copies-1
    request: SentRequest
    response: ReplayedResponse | None = None
    error: str = ""
    sent_ns: int = 0  # wall clock when sent (Unix ns)


@dataclass(frozen=True, slots=True)
class Difference:
    where: str  # "status" | "header:<name>" | "body:<json path>" | "body"
    recorded: str
    replayed: str


@dataclass(frozen=True, slots=True)
class Verdict:
    outcome: str  # "matched" | "changed" | "failed"
    differences: tuple[Difference, ...] = field(default=())
