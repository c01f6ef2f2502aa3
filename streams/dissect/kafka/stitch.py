"""Pair Kafka requests with their responses by correlation id and build `ApiCall`s.

A response carries only its correlation id, so each request's API key and version are
kept (with its summary, never its bytes) until the response comes. A broker answers the
requests of a connection in order, so when a response arrives, requests sent before its
own that are still waiting will never be answered (they are emitted as `no_response`).
Produce requests with acks=0 get no response by design and are emitted at once.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from schemas.records import ApiCall
from streams.dissect.base import new_call
from streams.dissect.kafka import requests, responses
from streams.dissect.kafka.apis import API_NAMES, error_name, is_flexible
from streams.dissect.kafka.events import Frame
from streams.dissect.kafka.parser import DEFAULT_MAX_FRAME, MAX_SIZE, FrameParser
from streams.dissect.kafka.summary import Summary, path_of
from streams.dissect.kafka.wire import Malformed, Reader, Truncated
from streams.dissect.skeleton import DissectorSkeleton
from streams.reassembly.events import Flow

PROTOCOL = "kafka"
DEFAULT_MAX_PENDING = 1024  # requests waiting for a response before the oldest is given up
MAX_CLIENT_ID = 1024
BodyReader = Callable[[Reader, int, Summary], None]

# The APIs whose body layout this package knows: the newest version it reads, and the
# readers of its request and response; newer versions are shown with their header
# fields only.
READERS: dict[int, tuple[int, BodyReader, BodyReader]] = {
    0: (13, requests.produce, responses.produce),
    1: (18, requests.fetch, responses.fetch),
    2: (10, requests.list_offsets, responses.list_offsets),
    3: (13, requests.metadata, responses.metadata),
    8: (10, requests.offset_commit, responses.offset_commit),
    9: (10, requests.offset_fetch, responses.offset_fetch),
    10: (6, requests.find_coordinator, responses.find_coordinator),
    11: (9, requests.join_group, responses.join_group),
    12: (4, requests.heartbeat, responses.heartbeat),
    13: (5, requests.leave_group, responses.leave_group),
    14: (5, requests.sync_group, responses.sync_group),
    18: (4, requests.api_versions, responses.api_versions),
    19: (7, requests.create_topics, responses.create_topics),
    22: (6, requests.init_producer_id, responses.init_producer_id),
}
MAX_VERSION = 31  # an API version above this is not a real request
# Message starts rejected in a row while resyncing before the flow goes opaque: each costs
# a check in Python, and some junk (a run of zeros) offers one at every byte.
MAX_RESYNC_CANDIDATES = 4096


def api_name(api_key: int) -> str:
    return API_NAMES.get(api_key) or f"ApiKey{api_key}"


def check_request_head(head: bytes, size: int) -> str | None:
    """Why these first bytes of a message cannot start a request (None if they may)."""
    if size < 10:
        return f"Kafka request of {size} bytes is shorter than a request header"
    if len(head) < 4:
        return None
    api_key = (head[0] << 8) | head[1]
    version = (head[2] << 8) | head[3]
    if api_key not in API_NAMES:
        return f"unknown Kafka API key {api_key}"
    if version > MAX_VERSION:
        return f"implausible Kafka API version {version}"
    if len(head) >= 10:
        n = int.from_bytes(head[8:10], "big", signed=True)
        if n < -1 or n > MAX_CLIENT_ID or n > size - 10:
            return f"implausible Kafka client id length {n}"
        if not _PRINTABLE.fullmatch(head[10 : 10 + max(n, 0)]):
            return "Kafka client id is not printable text"
    return None


def check_response_head(head: bytes, size: int) -> str | None:
    return None if size >= 4 else f"Kafka response of {size} bytes has no correlation id"


_PRINTABLE = re.compile(rb"[\x20-\x7e]*")
# size (< 256 MiB), API key (< 256), version (< 32), correlation id, client id length
_REQUEST_START = re.compile(rb"(?=[\x00-\x0f][\s\S]{3}\x00[\s\S]\x00[\x00-\x1f][\s\S]{4})")


@dataclass(slots=True)
class Pending:
    frame: Frame
    order: int
    api_key: int
    version: int
    correlation_id: int
    headers: list[tuple[str, str]]
    summary: Summary | None
    flags: list[str]


class KafkaDissector(DissectorSkeleton):
    """The `Dissector` for one Kafka connection (see `streams.dissect.skeleton`)."""

    protocol = PROTOCOL

    def __init__(
        self,
        flow: Flow,
        max_frame: int = DEFAULT_MAX_FRAME,
        max_pending: int = DEFAULT_MAX_PENDING,
    ) -> None:
        super().__init__()
        self.flow = flow
        self.max_pending = max_pending
        self.pending: OrderedDict[int, Pending] = OrderedDict()
        self.topic_ids: dict[str, str] = {}  # topic id -> name, learned on this flow
        self.order = 0
        self.candidates = [0, 0]  # message starts rejected per direction since the last frame
        self.framers = (
            FrameParser(check_request_head, self._find_request, partial(self._skipped, 0),
                        max_frame),
            FrameParser(check_response_head, self._find_response, partial(self._skipped, 1),
                        max_frame),
        )  # fmt: skip

    def _gap(self, d: int, size: int, ts: int) -> None:
        self._frames(d, self.framers[d].gap(size, ts), ts)

    def _close(self, ts: int) -> None:
        for d in (0, 1):
            frame = self.framers[d].close(ts)
            if frame is not None:
                self._frames(d, (frame,), ts)
        self._flush()

    def _skipped(self, d: int, reason: str, ts: int) -> None:
        """The framer of direction `d` skipped bytes; past its budget it stopped for good."""
        self._failed(d, reason, ts)
        if self.framers[d].failure:
            self._go_opaque()

    # ------------------------------------------------------------------- frames
    def _client(self, frame: Frame) -> None:
        self.candidates[0] = 0
        self._on_request(frame)

    def _server(self, frame: Frame) -> None:
        self.candidates[1] = 0
        self._on_response(frame)

    def _on_request(self, frame: Frame) -> None:
        data = frame.data
        if len(data) < 8:
            self._failed(0, "Kafka request header cut short", frame.ts)
            return
        r = Reader(data)
        api_key, version, correlation_id = r.int16(), r.int16(), r.int32()
        headers = [
            ("api_key", str(api_key)),
            ("api_version", str(version)),
            ("correlation_id", str(correlation_id)),
        ]
        flags = _frame_flags(frame, "request")
        summary = None
        try:
            client_id = r.string()
            if client_id is not None:
                headers.append(("client_id", client_id))
            if is_flexible(api_key, version):
                r.flexible = True
                r.tagged_fields()
            known = READERS.get(api_key)
            if known is not None and version <= known[0]:
                summary = Summary(self.topic_ids)
                known[1](r, version, summary)
        except (Truncated, Malformed) as e:
            self._unreadable(0, frame, e, flags, f"{api_name(api_key)} v{version} request")
        req = Pending(frame, self.order, api_key, version, correlation_id, headers, summary, flags)
        self.order += 1
        if api_key == 0 and summary is not None and ("acks", "0") in summary.headers:
            self.out.append(self._call(req, None))  # acks=0: the broker never answers
            return
        old = self.pending.pop(correlation_id, None)
        if old is not None:
            self._unanswered(old)
        self.pending[correlation_id] = req
        if len(self.pending) > self.max_pending:
            self._unanswered(self.pending.popitem(last=False)[1])

    def _on_response(self, frame: Frame) -> None:
        data = frame.data
        if len(data) < 4:
            self._failed(1, "Kafka response header cut short", frame.ts)
            return
        r = Reader(data)
        correlation_id = r.int32()
        req = self.pending.pop(correlation_id, None)
        if req is None:
            self.out.append(self._orphan(frame, correlation_id))
            return
        # Answers come in request order: older requests still waiting were not answered.
        while self.pending:
            first = next(iter(self.pending.values()))
            if first.order > req.order:
                break
            self._unanswered(self.pending.popitem(last=False)[1])
        flags = _frame_flags(frame, "response")
        summary = None
        known = READERS.get(req.api_key)
        if known is not None and req.version <= known[0]:
            summary = Summary(self.topic_ids)
            try:
                # ApiVersions responses keep header v0 so that any client can read them.
                if is_flexible(req.api_key, req.version):
                    r.flexible = True
                    if req.api_key != 18:
                        r.tagged_fields()
                known[2](r, req.version, summary)
            except (Truncated, Malformed) as e:
                self._unreadable(1, frame, e, flags, f"{api_name(req.api_key)} response")
        self.out.append(self._call(req, frame, summary, flags))
        if req.api_key == 17 and req.version == 0 and summary is None and len(data) >= 6:
            if data[4:6] == b"\x00\x00":
                # SaslHandshake v0 accepted: raw SASL tokens follow, without Kafka headers.
                self._go_opaque()

    def _unreadable(self, d: int, frame: Frame, e: Exception, flags: list[str], what: str) -> None:
        """A body that does not read is malformed, unless the cap cut it short."""
        if isinstance(e, Truncated) and frame.cut:
            return
        flags.append("malformed")
        self._failed(d, f"{what}: {e}", frame.ts)

    # ------------------------------------------------------------------- resync
    def _find_request(self, buf: bytes) -> int:
        pos = 0
        while True:
            m = _REQUEST_START.search(buf, pos)
            if m is None:
                return -1
            k = m.start()
            size = int.from_bytes(buf[k : k + 4], "big", signed=True)
            head = buf[k + 4 : k + 18]
            if check_request_head(head, size) is None and len(head) >= 10:
                return k
            if self._rejected(0):
                return -1
            pos = k + 1

    def _find_response(self, buf: bytes) -> int:
        """The earliest place where a waiting request's correlation id follows a sane size."""
        best = -1
        for correlation_id in self.pending:
            needle = correlation_id.to_bytes(4, "big", signed=True)
            pos = 4
            while True:
                k = buf.find(needle, pos)
                if k < 0 or (best >= 0 and k - 4 >= best):
                    break
                size = int.from_bytes(buf[k - 4 : k], "big", signed=True)
                if 4 <= size <= MAX_SIZE:
                    best = k - 4
                    break
                if self._rejected(1):
                    return -1
                pos = k + 1
        return best

    def _rejected(self, d: int) -> bool:
        """Count a rejected message start; past the budget the direction's parser stops."""
        self.candidates[d] += 1
        if self.candidates[d] <= MAX_RESYNC_CANDIDATES:
            return False
        self.framers[d].stop(f"no Kafka message start among {MAX_RESYNC_CANDIDATES} candidates")
        return True

    # ------------------------------------------------------------------- emitting
    def _unanswered(self, req: Pending) -> None:
        self.out.append(self._call(req, None))

    def _flush(self, flag: str = "") -> None:
        while self.pending:
            self._unanswered(self.pending.popitem(last=False)[1])

    def _call(
        self,
        req: Pending,
        resp: Frame | None,
        summary: Summary | None = None,
        resp_flags: list[str] | None = None,
    ) -> ApiCall:
        frame = req.frame
        rs = req.summary
        if rs is not None and rs.by_id:
            rs.resolve()
        flags = list(req.flags)
        fields: dict = dict(
            method=api_name(req.api_key),
            path=path_of(rs, summary),
            request_version=str(req.version),
            request_headers=tuple(req.headers + (rs.finish_headers() if rs else [])),
            request_body=rs.body() if rs else b"",
            request_body_size=frame.size,
            request_end_ns=frame.end_ts,
        )
        if resp is None:
            flags.append("no_response")
        else:
            status = summary.error if summary is not None else 0
            headers = [("correlation_id", str(req.correlation_id))]
            if summary is not None:
                headers += summary.finish_headers()
            fields.update(
                status=status,
                reason=error_name(status) if summary is not None else "",
                response_version=str(req.version),
                response_headers=tuple(headers),
                response_body=summary.body() if summary is not None else b"",
                response_body_size=resp.size,
                response_ts_ns=resp.ts,
                response_end_ns=resp.end_ts,
            )
            flags += [f for f in resp_flags or () if f not in flags]
        return new_call(self.flow, PROTOCOL, frame.seq, frame.ts, flags=tuple(flags), **fields)

    def _orphan(self, frame: Frame, correlation_id: int) -> ApiCall:
        """A response whose request was never seen (the capture began after it)."""
        return new_call(
            self.flow,
            PROTOCOL,
            frame.seq,
            frame.ts,
            request_end_ns=frame.ts,
            response_headers=(("correlation_id", str(correlation_id)),),
            response_body_size=frame.size,
            response_ts_ns=frame.ts,
            response_end_ns=frame.end_ts,
            flags=("no_request", *_frame_flags(frame, "response")),
        )


def _frame_flags(frame: Frame, side: str) -> list[str]:
    flags = []
    if frame.gap:
        flags.append("gap")
    if frame.cut:
        flags.append(f"{side}_truncated")
    return flags
