"""What the HTTP/1.x framer hands the stitcher: one mutable record per message.

A message is created at its first byte, filled by the httptools callbacks, and handed over
twice: once when its head (start line + headers) is complete, so responses can be paired
(and HEAD / CONNECT answered) before their bodies arrive, and once when it is complete.
"""

from __future__ import annotations

REQUEST, RESPONSE = 0, 1

# Sentinel put in `HttpMessage.response` for a request that will never get its response.
NO_RESPONSE = object()


class HttpMessage:
    """A request or a response as seen on the wire (fields filled progressively)."""

    __slots__ = (
        "kind",
        "ts",
        "seq",
        "end_ts",
        "url",
        "reason",
        "method",
        "status",
        "version",
        "trailers",
        "headers",
        "content_type",
        "body",
        "wire_size",
        "flags",
        "done",
        "upgrade",
        "response",
        "orphan",
        "suspect",
    )

    def __init__(self, kind: int, ts: int, seq: int) -> None:
        self.kind = kind
        self.ts = ts  # capture time of the segment carrying the first byte
        self.seq = seq  # TCP sequence number of the first byte
        self.end_ts = ts  # capture time of the segment carrying the last byte
        self.url = b""
        self.reason = b""
        self.method = ""
        self.status = 0
        self.version = ""
        self.trailers: list[tuple[bytes, bytes]] | None = None
        self.headers: tuple[tuple[str, str], ...] = ()
        self.content_type = ""
        self.body = b""  # decoded and capped, set when the message completes
        self.wire_size = 0  # body bytes on the wire (chunk framing included)
        self.flags: list[str] = []
        self.done = False
        self.upgrade = False  # request asked to switch protocols (Upgrade / CONNECT)
        self.response: object = None  # request side: HttpMessage | NO_RESPONSE | None
        self.orphan = False  # response side: no request to pair with
        self.suspect = False  # request side: its response may have been lost in a gap

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        what = f"{self.method} {self.url!r}" if self.kind == REQUEST else str(self.status)
        return f"<HttpMessage {what} seq={self.seq} done={self.done} flags={self.flags}>"
