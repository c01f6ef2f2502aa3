"""WebSocket messages → `ApiCall`s (one dissector per upgraded flow).

The side that opened the handshake is the call's `src` for every call. Data messages are
one-way: a client message is a call with no response; a server message is a call whose
response holds it, flagged `push`. Ping ↔ pong and close ↔ close are paired across the
directions (a pong answers the latest matching ping); an exchange the server started is
flagged `push`, with the server's frame in the response fields.
"""

from __future__ import annotations

from collections import deque

from schemas.records import ApiCall
from streams.dissect.base import DissectEvent, new_call, reversed_flow
from streams.dissect.skeleton import DissectorSkeleton
from streams.dissect.websocket.events import (
    BINARY,
    CLOSE,
    NO_STATUS,
    PING,
    PONG,
    TEXT,
    WsFailed,
    WsMessage,
)
from streams.dissect.websocket.handshake import Handshake
from streams.dissect.websocket.parser import DEFAULT_MAX_MESSAGE, FrameParser, WsEvent
from streams.reassembly.events import Direction, Flow

PROTOCOL = "websocket"
DEFAULT_MAX_PENDING = 64  # unanswered pings per side before the oldest is given up
_METHODS = {TEXT: "text", BINARY: "binary", PING: "ping", PONG: "pong", CLOSE: "close"}


def close_code(payload: bytes) -> tuple[int, str]:
    """A close frame's status code and reason (1005 when it carries none)."""
    if len(payload) < 2:
        return NO_STATUS, ""
    return int.from_bytes(payload[:2], "big"), payload[2:].decode("utf-8", "replace")


def _side_flags(flags: tuple[str, ...], side: str) -> list[str]:
    """Parser flags with "truncated" / "incomplete" named after the side they concern."""
    return [side + f if f in ("truncated", "incomplete") else f for f in flags]


class WebSocketDissector(DissectorSkeleton):
    """The `Dissector` for a WebSocket connection (see `streams.dissect.base`).

    `client_dir` is the stream direction carrying the client's frames (1 when the flow's
    roles were guessed backwards). Without a known handshake it is decided by the first
    frame: only clients mask.

    Memory per flow stays under 2 × (14 + `max_message` + 125) bytes of frames and
    messages plus 2 × `max_pending` × 125 bytes of unanswered pings."""

    protocol = PROTOCOL

    def __init__(
        self,
        flow: Flow,
        handshake: Handshake | None = None,
        client_dir: int = 0,
        max_message: int = DEFAULT_MAX_MESSAGE,
        max_pending: int = DEFAULT_MAX_PENDING,
    ) -> None:
        super().__init__()
        self.flow = flow
        self.handshake = handshake or Handshake(known=False)
        self.client_dir = client_dir
        self.max_pending = max_pending
        # Parsers are indexed by side: 0 = client's frames, 1 = server's; `framers` by
        # stream direction.
        self._sides = (
            FrameParser(0, self.handshake, max_message),
            FrameParser(1, self.handshake, max_message),
        )
        self.framers = self._by_direction()
        self._roles_known = self.handshake.known
        self._pings: tuple[deque[WsMessage], deque[WsMessage]] = (deque(), deque())
        self._closing: WsMessage | None = None  # the first close frame, awaiting the other

    def receive(
        self, direction: Direction, data: bytes, ts_ns: int, seq: int
    ) -> list[DissectEvent]:
        if not self._roles_known and data and not self.closed:
            self._guess_roles(int(direction), data)
        return super().receive(direction, data, ts_ns, seq)

    # ------------------------------------------------------------------ hooks

    def _client(self, ev: WsEvent) -> None:
        """One frame or message of either side (each says which)."""
        if type(ev) is WsFailed:
            self._failed(self._direction(ev.direction), ev.reason, ev.ts)
        elif ev.opcode == TEXT or ev.opcode == BINARY:
            self.out.append(self._one_way(ev))
        elif ev.opcode == PING:
            pending = self._pings[ev.direction]
            pending.append(ev)
            if len(pending) > self.max_pending:
                self.out.append(self._pair(pending.popleft(), None))
        elif ev.opcode == PONG:
            self._pong(ev)
        else:
            self._close_frame(ev)

    _server = _client

    def _gap(self, d: int, size: int, ts: int) -> None:
        self._frames(d, self.framers[d].gap(size, ts), ts)

    def _close(self, ts: int) -> None:
        for side, parser in enumerate(self._sides):
            self._frames(self._direction(side), parser.close(ts), ts)
        self._flush()

    @property
    def idle(self) -> bool:
        if self._pings[0] or self._pings[1] or self._closing is not None:
            return False
        return self.opaque or self.closed or (self._sides[0].idle and self._sides[1].idle)

    @property
    def buffered(self) -> int:
        n = self._sides[0].buffered + self._sides[1].buffered
        for pending in self._pings:
            n += sum(len(p.payload) for p in pending)
        return n

    # ---------------------------------------------------------------- roles

    def _direction(self, side: int) -> int:
        """The stream direction of a side (0 = client), and the side of a direction."""
        return side if self.client_dir == 0 else 1 - side

    def _by_direction(self) -> tuple[FrameParser, FrameParser]:
        return self._sides[self._direction(0)], self._sides[self._direction(1)]

    def _guess_roles(self, direction: int, data: bytes) -> None:
        """Mid-stream pick-up: the side that masks its frames is the client (the first
        bytes seen start a frame: the probe checked them)."""
        if len(data) >= 2:
            self.client_dir = direction if data[1] & 0x80 else 1 - direction
            self.framers = self._by_direction()
            self._roles_known = True

    # --------------------------------------------------------------- stitching

    def _pong(self, pong: WsMessage) -> None:
        """A pong answers the latest ping from the other side with the same payload (RFC
        6455 5.5.3 lets an endpoint answer only the most recent); older ones went unanswered."""
        pending = self._pings[1 - pong.direction]
        for k in range(len(pending) - 1, -1, -1):
            if pending[k].payload == pong.payload:
                for _ in range(k):
                    self.out.append(self._pair(pending.popleft(), None))
                self.out.append(self._pair(pending.popleft(), pong))
                return
        self.out.append(self._one_way(pong))  # unsolicited: a heartbeat

    def _close_frame(self, frame: WsMessage) -> None:
        first = self._closing
        if first is None or first.direction == frame.direction:
            if first is not None:
                self.out.append(self._pair(first, None))
            self._closing = frame
            return
        self._closing = None
        self.out.append(self._pair(first, frame))

    def _flush(self, flag: str = "") -> None:
        for pending in self._pings:
            while pending:
                self.out.append(self._pair(pending.popleft(), None))
        if self._closing is not None:
            self.out.append(self._pair(self._closing, None))
            self._closing = None

    # ------------------------------------------------------------------- calls

    def _call(self, first: WsMessage, **fields: object) -> ApiCall:
        """A call of the side that opened the handshake, begun by `first`."""
        flow = self.flow if self.client_dir == 0 else reversed_flow(self.flow)
        return new_call(
            flow,
            PROTOCOL,
            first.seq,
            first.ts,
            method=_METHODS[first.opcode],
            path=self.handshake.path,
            query=self.handshake.query,
            **fields,
        )

    def _one_way(self, msg: WsMessage) -> ApiCall:
        """A data message (or an unsolicited pong): no answer expected."""
        if msg.direction == 0:
            return self._call(
                msg,
                request_body=msg.payload,
                request_body_size=msg.size,
                request_end_ns=msg.end_ts,
                flags=(*_side_flags(msg.flags, "request_"), "no_response"),
            )
        return self._call(
            msg,
            request_end_ns=msg.ts,
            response_body=msg.payload,
            response_body_size=msg.size,
            response_ts_ns=msg.ts,
            response_end_ns=msg.end_ts,
            flags=("push", *_side_flags(msg.flags, "response_")),
        )

    def _pair(self, first: WsMessage, reply: WsMessage | None) -> ApiCall:
        """A ping and its pong, or a close and the other side's close."""
        client, server = (first, reply) if first.direction == 0 else (reply, first)
        fields: dict[str, object] = {}
        flags = [] if first.direction == 0 else ["push"]
        if first.opcode == CLOSE:
            fields["status"], fields["reason"] = close_code(first.payload)
        if client is not None:
            fields["request_body"], fields["request_body_size"] = _body(client), client.size
            fields["request_end_ns"] = client.end_ts
            if client.opcode == CLOSE:
                fields["request_headers"] = _close_headers(client.payload)
        else:
            fields["request_end_ns"] = first.ts
        if server is not None:
            fields["response_body"], fields["response_body_size"] = _body(server), server.size
            fields["response_ts_ns"], fields["response_end_ns"] = server.ts, server.end_ts
            if server.opcode == CLOSE:
                fields["response_headers"] = _close_headers(server.payload)
        if reply is None:
            flags.append("no_response")
        return self._call(first, flags=tuple(flags), **fields)


def _close_headers(payload: bytes) -> tuple[tuple[str, str], ...]:
    code, reason = close_code(payload)
    if reason:
        return (("websocket-close-code", str(code)), ("websocket-close-reason", reason))
    return (("websocket-close-code", str(code)),)


def _body(frame: WsMessage) -> bytes:
    """A ping / pong payload, or a close frame's reason (its code is in the headers)."""
    return frame.payload[2:] if frame.opcode == CLOSE else frame.payload
