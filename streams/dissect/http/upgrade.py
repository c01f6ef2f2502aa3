"""After `101 Switching Protocols`: which dissector reads the rest of the flow.

`UPGRADES` maps the token of the response's Upgrade header to a constructor. A constructor
gets the flow and the `Switch` (the handshake, which direction is the client) and returns
the next dissector, or None when the handshake does not complete that protocol (then the
flow stays opaque, as for any other switch). The HTTP dissector then feeds it the bytes
that followed the handshake in both directions, and hands it everything after.

An upgrade that `takes_request` (h2c: the upgraded request is answered on HTTP/2 stream 1)
receives the request's call in the `Switch` and emits it itself; the HTTP dissector then
does not.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from schemas.records import ApiCall
from streams.dissect.base import Dissector
from streams.dissect.http.events import HttpMessage
from streams.dissect.http2 import after_h2c_upgrade
from streams.dissect.websocket import WebSocketDissector, websocket_handshake
from streams.reassembly.events import Flow

# What the request direction held after the Upgrade request: (bytes, ts, seq) chunks, or
# (None, ts, size) where `size` bytes were lost.
Held = list[tuple[bytes | None, int, int]]


@dataclass(frozen=True, slots=True)
class Switch:
    request: HttpMessage  # the Upgrade request (complete)
    response: HttpMessage  # the 101 (its head)
    path: str
    query: str
    client_dir: int  # the stream direction that carried the request
    client_bytes: Held  # bytes the client sent after its request, in order
    server_bytes: Held  # bytes the server sent after the 101 (in the 101's segment)
    request_call: ApiCall | None = None  # the call the HTTP dissector made of the request


Constructor = Callable[[Flow, Switch], Dissector | None]


@dataclass(frozen=True, slots=True)
class Upgrade:
    build: Constructor
    takes_request: bool = False


def _websocket(flow: Flow, switch: Switch) -> Dissector | None:
    handshake = websocket_handshake(
        switch.request.headers, switch.response.headers, switch.path, switch.query
    )
    if handshake is None:
        return None
    return WebSocketDissector(flow, handshake, switch.client_dir)


def _h2c(flow: Flow, switch: Switch) -> Dissector | None:
    """HTTP/2 over cleartext (RFC 7540 3.2), read by the HTTP/2 dissector."""
    return after_h2c_upgrade(flow, switch.request_call)


UPGRADES: dict[str, Upgrade] = {
    "websocket": Upgrade(_websocket),
    "h2c": Upgrade(_h2c, takes_request=True),
}


def upgrade_token(response: HttpMessage) -> str:
    """The protocol a 101 switches to (its Upgrade header's first token, lower-case)."""
    for name, value in response.headers:
        if name.lower() == "upgrade":
            return value.split(",", 1)[0].strip().lower()
    return ""


def next_dissector(flow: Flow, switch: Switch, upgrade: Upgrade) -> Dissector | None:
    """The dissector for the protocol the flow switched to, or None (stay opaque).
    A constructor that is missing or fails leaves the flow opaque, as before hand-offs."""
    try:
        return upgrade.build(flow, switch)
    except Exception:
        return None
