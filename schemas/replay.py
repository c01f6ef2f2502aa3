"""The replay result record (topic `wiretide.replay`, keyed by run id) and its codec.

A result is one copy of one recorded call, sent again, and the verdict of comparing the
answer with the recording. It carries the recorded call whole, so a consumer (the store,
a report, the UI) needs nothing else to show both sides.
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas.records import ApiCall, Headers

Differences = tuple[tuple[str, str, str], ...]  # (where, recorded, replayed)


@dataclass(frozen=True, slots=True)
class ReplayResult:
    run_id: str
    copy: int
    sent_ns: int
    outcome: str  # matched | changed | failed
    differences: Differences
    recorded: ApiCall
    request_method: str
    request_url: str
    request_headers: Headers = ()
    request_body: bytes = b""
    answered: bool = False
    status: int = 0
    response_headers: Headers = ()
    response_body: bytes = b""
    latency_ns: int = 0
    error: str = ""
