"""WebSocket (RFC 6455, permessage-deflate RFC 7692): frames (`parser`), calls (`stitch`).

A WebSocket flow normally reaches this dissector from the HTTP/1 dissector after a
`101 Switching Protocols` (see `streams.dissect.http.upgrade`), with the handshake's path
and extensions. The factory registered here picks up connections whose handshake was not
captured (capture started, or a crash replay resumed, mid-connection): its probe wants the
first bytes to be whole, well-formed frames.
"""

from __future__ import annotations

from streams.dissect.websocket.events import CONTINUATION
from streams.dissect.websocket.handshake import Handshake, websocket_handshake
from streams.dissect.websocket.parser import DEFAULT_MAX_MESSAGE, header_problem
from streams.dissect.websocket.stitch import PROTOCOL, WebSocketDissector
from streams.reassembly.events import Flow

__all__ = [
    "WEBSOCKET",
    "Handshake",
    "WebSocketDissector",
    "WebSocketFactory",
    "websocket_handshake",
]

PROBE_SCORE = 0.55  # whole frames are good evidence, but weaker than a protocol's magic


def whole_frames(data: bytes, limit: int = 64) -> int:
    """How many complete, well-formed frames `data` is made of exactly (0 if it is not)."""
    n = len(data)
    i = frames = 0
    masked = None
    while i < n and frames < limit:
        if n - i < 2:
            return 0
        b0, b1 = data[i], data[i + 1]
        if header_problem(b0, b1, True) or (frames == 0 and b0 & 0x0F == CONTINUATION):
            return 0
        if masked is None:
            masked = b1 & 0x80
        elif masked != b1 & 0x80:
            return 0  # one side either masks every frame or none
        length = b1 & 0x7F
        size = 2 + (2 if length == 126 else 8 if length == 127 else 0) + (4 if masked else 0)
        if n - i < size:
            return 0
        if length == 126:
            length = int.from_bytes(data[i + 2 : i + 4], "big")
        elif length == 127:
            length = int.from_bytes(data[i + 2 : i + 10], "big")
        i += size + length
        if i > n:
            return 0
        frames += 1
    return frames if i == n or frames == limit else 0


class WebSocketFactory:
    """Makes a `WebSocketDissector` for a flow picked up without its handshake."""

    protocol = PROTOCOL
    ports: frozenset[int] = frozenset()

    def __init__(self, max_message: int = DEFAULT_MAX_MESSAGE) -> None:
        self.max_message = max_message

    def probe(self, data: bytes) -> float:
        return PROBE_SCORE if whole_frames(bytes(data)) else 0.0

    def __call__(self, flow: Flow) -> WebSocketDissector:
        return WebSocketDissector(flow, None, 0, self.max_message)


WEBSOCKET = WebSocketFactory()
