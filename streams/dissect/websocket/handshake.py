"""The HTTP/1.1 opening handshake (RFC 6455 section 4): what it tells the frame dissector."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


@dataclass(frozen=True, slots=True)
class Deflate:
    """permessage-deflate as the server accepted it (RFC 7692): which sides reset their
    compression context after each message."""

    client_no_context_takeover: bool = False
    server_no_context_takeover: bool = False


@dataclass(frozen=True, slots=True)
class Handshake:
    """What the frames inherit from the handshake. `known` is False for a flow picked up
    mid-stream (no handshake seen): then compression is guessed from the RSV1 bit."""

    path: str = ""
    query: str = ""
    deflate: Deflate | None = None
    subprotocol: str = ""
    known: bool = True


def accept_key(key: str) -> str:
    """The Sec-WebSocket-Accept a server must answer a Sec-WebSocket-Key with."""
    digest = hashlib.sha1(key.strip().encode("latin-1") + GUID).digest()
    return base64.b64encode(digest).decode()


def header(headers: Iterable[tuple[str, str]], name: str) -> str | None:
    """The first value of header `name` (lower-case), or None."""
    for k, v in headers:
        if k.lower() == name:
            return v
    return None


def negotiated_deflate(extensions: str | None) -> Deflate | None:
    """permessage-deflate from a response's Sec-WebSocket-Extensions, if accepted there."""
    if not extensions:
        return None
    for offer in extensions.split(","):
        name, *params = [p.strip().lower() for p in offer.split(";")]
        if name != "permessage-deflate":
            continue
        keys = {p.split("=", 1)[0].strip() for p in params}
        return Deflate(
            client_no_context_takeover="client_no_context_takeover" in keys,
            server_no_context_takeover="server_no_context_takeover" in keys,
        )
    return None


def websocket_handshake(
    request_headers: Iterable[tuple[str, str]],
    response_headers: Iterable[tuple[str, str]],
    path: str,
    query: str,
) -> Handshake | None:
    """A `Handshake` when a 101 completes a WebSocket opening handshake the client would
    accept (Upgrade: websocket and the right Sec-WebSocket-Accept), else None."""
    response_headers = tuple(response_headers)
    upgrade = header(response_headers, "upgrade")
    if upgrade is None or upgrade.strip().lower() != "websocket":
        return None
    key = header(request_headers, "sec-websocket-key")
    accept = header(response_headers, "sec-websocket-accept")
    if key is None or accept is None or accept.strip() != accept_key(key):
        return None
    return Handshake(
        path=path,
        query=query,
        deflate=negotiated_deflate(header(response_headers, "sec-websocket-extensions")),
        subprotocol=(header(response_headers, "sec-websocket-protocol") or "").strip(),
    )
