"""HTTP/1.0 and HTTP/1.1: framing on httptools (`parser`), request/response pairing
(`stitch`), and the factory the dissect stage registers (`HTTP1`)."""

from __future__ import annotations

import re

from streams.dissect.http.parser import DEFAULT_MAX_BODY, DEFAULT_MAX_HEADER
from streams.dissect.http.stitch import DEFAULT_MAX_PENDING, PROTOCOL, Http1Dissector
from streams.reassembly.events import Flow

__all__ = ["HTTP1", "Http1Dissector", "Http1Factory"]

_METHODS = (
    b"GET|POST|PUT|DELETE|HEAD|OPTIONS|PATCH|TRACE|CONNECT|PROPFIND|PROPPATCH|MKCOL|COPY|MOVE|"
    b"LOCK|UNLOCK|SEARCH|REPORT|PURGE|LINK|UNLINK|SUBSCRIBE|UNSUBSCRIBE|NOTIFY|M-SEARCH|MKCALENDAR"
)
_METHOD_NAMES = tuple(m + b" " for m in _METHODS.split(b"|"))
_KNOWN_REQUEST = re.compile(rb"(?:" + _METHODS + rb") [^ \r\n]+ HTTP/1\.[01]\r?\n")
_ANY_REQUEST = re.compile(rb"[A-Z][A-Z0-9_-]{0,23} [^ \r\n]+ HTTP/1\.[0-9]\r?\n")
_STATUS = re.compile(rb"HTTP/1\.[01] [1-5][0-9][0-9](?: [^\r\n]*)?\r?\n")
_KNOWN_PREFIX = re.compile(rb"(?:" + _METHODS + rb") [^ \r\n]*$")
_STATUS_PREFIX = re.compile(rb"HTTP/(?:1(?:\.(?:[01](?: (?:[1-5][0-9]{0,2}.*)?)?)?)?)?$", re.S)


class Http1Factory:
    """Makes one `Http1Dissector` per flow; `probe` scores the first bytes of a direction."""

    protocol = PROTOCOL
    ports = frozenset({80, 8080, 8000, 8888, 3000, 5000, 8081})

    def __init__(
        self,
        max_body: int = DEFAULT_MAX_BODY,
        max_header: int = DEFAULT_MAX_HEADER,
        max_pending: int = DEFAULT_MAX_PENDING,
    ) -> None:
        self.max_body = max_body
        self.max_header = max_header
        self.max_pending = max_pending

    def probe(self, data: bytes) -> float:
        """1.0 for a whole request line with a known method or a status line; less for an
        unknown method or a line cut short; 0.0 otherwise."""
        head = bytes(data[:4096]).lstrip(b"\r\n")
        if not head:
            return 0.0
        if _KNOWN_REQUEST.match(head) or _STATUS.match(head):
            return 1.0
        if _ANY_REQUEST.match(head):
            return 0.6
        if b"\n" in head:
            return 0.0
        if _KNOWN_PREFIX.match(head) or _STATUS_PREFIX.match(head):
            return 0.5 if len(head) >= 4 else 0.2
        if len(head) < 12 and (
            b"HTTP/1.".startswith(head) or any(m.startswith(head) for m in _METHOD_NAMES)
        ):
            return 0.2  # a first segment cut inside the method or the version
        return 0.0

    def __call__(self, flow: Flow) -> Http1Dissector:
        return Http1Dissector(flow, self.max_body, self.max_header, self.max_pending)


HTTP1 = Http1Factory()
