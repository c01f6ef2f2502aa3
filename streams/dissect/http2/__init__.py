"""HTTP/2 (gRPC included): framing on hyperframe (`frames`), HPACK on hpack, stream pairing
(`stitch`; gRPC bodies are `streams.dissect.grpc`'s), and the factory the registry lists
(`HTTP2`).

For the HTTP/1.1 dissector, after `101 Switching Protocols` with `Upgrade: h2c`:

    after_h2c_upgrade(flow: Flow, request: ApiCall | None = None) -> Http2Dissector

returns the dissector to feed every later byte of the flow (both directions, from the
first byte after the 101 response's head, and the client's bytes after the upgraded
request). It expects the client preface next. Stream 1 is the upgraded request's
response: pass the HTTP/1.1 request as the `ApiCall` you would have emitted for it (its
response fields are ignored) and do not emit that call yourself; the HTTP/2 dissector
emits it once stream 1 is answered, with the same `call_id`, protocol `http2` (or
`grpc`), the response fields filled and the flag `h2c_upgrade`. With `request=None`,
stream 1's answer is emitted as a call flagged `no_request`.
"""

from __future__ import annotations

from schemas.records import ApiCall
from streams.dissect.http2.frames import DEFAULT_MAX_FRAME, PREFACE
from streams.dissect.http2.stitch import (
    DEFAULT_MAX_BODY,
    DEFAULT_MAX_HEADER,
    DEFAULT_MAX_STREAMS,
    PROTOCOL,
    Http2Dissector,
    h2c_dissector,
)
from streams.reassembly.events import Flow

__all__ = ["HTTP2", "Http2Dissector", "Http2Factory", "after_h2c_upgrade"]

# Flags each frame type defines (RFC 9113 §6); a frame with others is not HTTP/2.
_FLAGS = {0: 0x09, 1: 0x2D, 2: 0, 3: 0, 4: 0x01, 5: 0x0C, 6: 0x01, 7: 0, 8: 0, 9: 0x04}
_ON_STREAM_0 = {4, 6, 7}  # SETTINGS, PING, GOAWAY
_FIXED_LENGTH = {2: 5, 3: 4, 6: 8, 8: 4}  # PRIORITY, RST_STREAM, PING, WINDOW_UPDATE
_MAX_PROBED_LENGTH = 1 << 20


def _plausible(header: bytes) -> bool:
    length = int.from_bytes(header[:3], "big")
    ftype, flags = header[3], header[4]
    sid = int.from_bytes(header[5:9], "big")
    if ftype not in _FLAGS or flags & ~_FLAGS[ftype] or sid >> 31 or length > _MAX_PROBED_LENGTH:
        return False
    if (ftype in _ON_STREAM_0) != (sid == 0) and ftype != 8:
        return False
    if ftype in _FIXED_LENGTH and length != _FIXED_LENGTH[ftype]:
        return False
    if ftype == 4:
        return length == 0 if flags & 1 else length % 6 == 0
    return ftype != 7 or length >= 8


def _frames(data: bytes) -> int:
    """Whole plausible frames at the start of `data`; -1 if any header is implausible."""
    i, n, count = 0, len(data), 0
    while i + 9 <= n:
        if not _plausible(data[i : i + 9]):
            return -1
        i += 9 + int.from_bytes(data[i : i + 3], "big")
        if i > n:
            break
        count += 1
    return count


class Http2Factory:
    """Makes one `Http2Dissector` per flow; `probe` scores the first bytes of a direction."""

    protocol = PROTOCOL
    ports = frozenset({50051})  # gRPC's usual port; HTTP/2 itself has none of its own

    def __init__(
        self,
        max_body: int = DEFAULT_MAX_BODY,
        max_header: int = DEFAULT_MAX_HEADER,
        max_streams: int = DEFAULT_MAX_STREAMS,
        max_frame: int = DEFAULT_MAX_FRAME,
    ) -> None:
        self.caps = {
            "max_body": max_body,
            "max_header": max_header,
            "max_streams": max_streams,
            "max_frame": max_frame,
        }

    def probe(self, data: bytes) -> float:
        """1.0 for the client preface; 0.8 for a server's first SETTINGS frame; 0.5-0.65
        for plausible frames (a capture that began after the preface)."""
        head = bytes(data[:4096])
        if head.startswith(PREFACE):
            return 1.0
        if len(head) < len(PREFACE) and PREFACE.startswith(head):
            return 0.9 if len(head) >= 4 else 0.2
        if len(head) < 9 or not _plausible(head[:9]):
            return 0.0
        count = _frames(head)
        if head[3] == 4 and not head[4] & 1 and count != -1:
            return 0.8  # SETTINGS (not an ACK) first: a server preface
        if count >= 3:
            return 0.65
        if count == 2:
            return 0.55
        if count == 1 and head[3] in _FIXED_LENGTH | {4: 0} and len(head) == 9 + head[2]:
            return 0.5  # one whole control frame (a SETTINGS ACK, a PING, ...) alone
        return 0.0

    def __call__(self, flow: Flow) -> Http2Dissector:
        return Http2Dissector(flow, **self.caps)


HTTP2 = Http2Factory()


def after_h2c_upgrade(flow: Flow, request: ApiCall | None = None) -> Http2Dissector:
    """The dissector for a flow after `101 Switching Protocols` / `Upgrade: h2c` (see the
    module notes): stream 1 answers `request`."""
    return h2c_dissector(flow, request, **HTTP2.caps)
