"""Turn AMQP 0-9-1 frames into calls (one dissector per connection).

* Synchronous methods wait, per channel, for a reply the spec allows (queue.declare for
  queue.declare-ok, basic.get for get-ok or get-empty, ...) from the other side. Methods
  the broker starts (connection.start, connection.tune, a broker's channel.close) are
  calls too, flagged "push", answered by the client.
* A channel.close / connection.close from the broker fails the calls waiting on that
  channel (on every channel for connection.close): they get the close as their response,
  with its reply code as status and its reply text as reason. The client's close-ok is
  then absorbed. With nothing waiting, the broker's close is a call of its own.
* Asynchronous methods are calls of their own: from the client (basic.publish, ack, nack,
  reject, any method with no-wait) flagged "oneway"; from the broker (basic.deliver,
  basic.return, publisher-confirm acks) flagged "push", their message as the response.
* Content (header + body frames) is attached to its method; the call is emitted when the
  body is complete. Bodies keep their first `max_body` bytes and their full size.
"""

from __future__ import annotations

from streams.dissect.amqp.calls import PROTOCOL, Call, CallBuilder, Content
from streams.dissect.amqp.events import (
    BodyChunk,
    ContentHeader,
    Frame,
    FrameError,
    Method,
    ProtocolHeader,
)
from streams.dissect.amqp.parser import DEFAULT_MAX_FRAME, FrameParser
from streams.dissect.amqp.spec import (
    BOTH,
    CHANNEL_CLOSE,
    CLIENT,
    CLOSE_OK,
    CONNECTION_CLOSE,
    REQUEST_OF,
)
from streams.dissect.skeleton import DissectorSkeleton
from streams.reassembly.events import Flow

DEFAULT_MAX_BODY = 64 * 1024  # message body (or argument JSON) bytes kept per message
DEFAULT_MAX_HELD = 1024 * 1024  # body bytes held across all messages still arriving
DEFAULT_MAX_PENDING = 256  # calls waiting for a reply before the oldest is given up
_CLOSES = (CHANNEL_CLOSE, CONNECTION_CLOSE)
_AMQP_1 = frozenset({b"\x00\x01\x00\x00", b"\x02\x01\x00\x00", b"\x03\x01\x00\x00"})


class AmqpDissector(DissectorSkeleton):
    """The `Dissector` for one AMQP 0-9-1 connection (see `streams.dissect.skeleton`)."""

    protocol = PROTOCOL

    def __init__(
        self,
        flow: Flow,
        max_body: int = DEFAULT_MAX_BODY,
        max_frame: int = DEFAULT_MAX_FRAME,
        max_pending: int = DEFAULT_MAX_PENDING,
        max_held: int = DEFAULT_MAX_HELD,
    ) -> None:
        super().__init__()
        self.flow = flow
        self.max_body = max_body
        self._builder = CallBuilder(flow, max_body)
        self.max_pending = max_pending
        self.max_held = max_held
        self.framers = (FrameParser(max_frame), FrameParser(max_frame))
        self._client_side = 0  # the direction the AMQP client writes in
        self._roles_known = False
        self._pending: dict[int, list[Call]] = {}  # channel -> calls waiting for a reply
        self._waiting: dict[int, Call] = {}  # id -> waiting call, oldest first (for the cap)
        self._contents: tuple[dict[int, tuple[Call, Content]], ...] = ({}, {})
        self._held = 0
        self._absorb: dict[int, int] = {}  # channel -> client close-oks to absorb

    @property
    def idle(self) -> bool:
        busy = self._waiting or self._contents[0] or self._contents[1] or self._absorb
        return not busy and super().idle

    @property
    def buffered(self) -> int:
        """Bytes held for frames and bodies not yet complete (bounded by the caps)."""
        return super().buffered + self._held

    def _gap(self, d: int, size: int, ts: int) -> None:
        frames, lost = self.framers[d].gap(size, ts)
        self._frames(d, frames, ts)
        if lost:
            self._framing_lost(d)

    # ------------------------------------------------------------------ frames

    def _client(self, frame: Frame) -> None:
        self._on_frame(0, frame)

    def _server(self, frame: Frame) -> None:
        self._on_frame(1, frame)

    def _on_frame(self, d: int, frame: Frame) -> None:
        kind = type(frame)
        if kind is Method:
            self._on_method(d, frame)  # type: ignore[arg-type]
        elif kind is BodyChunk:
            self._on_body(d, frame)  # type: ignore[arg-type]
        elif kind is ContentHeader:
            self._on_header(d, frame)  # type: ignore[arg-type]
        elif kind is ProtocolHeader:
            self._on_protocol_header(d, frame)  # type: ignore[arg-type]
        elif kind is FrameError:
            self._failed(d, frame.reason, frame.ts)  # type: ignore[union-attr]

    def _on_protocol_header(self, d: int, h: ProtocolHeader) -> None:
        if h.version in _AMQP_1:
            self._failed(d, "AMQP 1.0 is a different protocol; not dissected", h.ts)
            self._go_opaque()
            return
        if not self._roles_known:
            self._client_side, self._roles_known = d, True

    def _on_method(self, d: int, m: Method) -> None:
        ch = m.channel
        current = self._contents[d].pop(ch, None)
        if current is not None:  # a new method ends the content before it
            self._end_content(current, "incomplete")
        spec = m.spec
        if not self._roles_known and spec.sender != BOTH:
            self._client_side = d if spec.sender == CLIENT else 1 - d
            self._roles_known = True
        key = (spec.class_id, spec.method_id)
        if key in REQUEST_OF:
            self._on_reply(d, m)
            return
        from_broker = d != self._client_side
        if from_broker and key in _CLOSES and self._fail_waiting(d, m):
            return
        call = Call(m, d, from_broker)
        if m.args is None:
            call.flags.append("malformed")
        if spec.replies and not (m.args and m.args.get("no-wait")):
            if from_broker and key in _CLOSES and m.args:
                call.status = m.args["reply-code"]
                call.reason = m.args["reply-text"]
            self._wait(ch, call)
        else:
            call.resolved = True
            call.oneway = not from_broker
        if spec.content:
            content = Content("response" if from_broker else "request", m.end_ts)
            if from_broker:
                call.response_content = content
            else:
                call.request_content = content
            self._start_content(d, ch, call, content)
        else:
            self._ready(call)

    def _on_reply(self, d: int, m: Method) -> None:
        ch = m.channel
        spec = m.spec
        waiting = self._pending.get(ch, ())
        match = None
        for k, c in enumerate(waiting):
            if c.initiator == d or not _answers(c.request, m):
                continue
            if (
                c.suspect
                and any(
                    o.initiator != d and _answers(o.request, m) and o.request.ts <= m.ts  # type: ignore[union-attr]
                    for o in waiting[k + 1 :]
                )
            ):
                continue  # its reply was probably in lost bytes; a later call owns this one
            match = c
            break
        if match is not None:
            for c in list(waiting):
                if c is match:
                    break
                if c.suspect and c.initiator != d and _answers(c.request, m):
                    c.flags += ["gap", "no_response"]
                    self._unwait(ch, c)
                    self._resolve(c)
            self._unwait(ch, match)
            call = match
        else:
            if (spec.class_id, spec.method_id) in CLOSE_OK and self._absorb.get(ch):
                self._absorb[ch] -= 1
                if not self._absorb[ch]:
                    del self._absorb[ch]
                return
            call = Call(None, 1 - d, False)
            call.flags.append("no_request")
        call.response = m
        if m.args is None:
            call.flags.append("malformed")
        call.resolved = True
        if spec.content:
            content = Content("response", m.end_ts)
            call.response_content = content
            self._start_content(d, ch, call, content)
        else:
            self._ready(call)

    def _fail_waiting(self, d: int, close: Method) -> bool:
        """The broker closed a channel (or the connection): its waiting calls fail."""
        whole = (close.spec.class_id, close.spec.method_id) == CONNECTION_CLOSE
        victims = [
            c
            for ch, calls in self._pending.items()
            if whole or ch == close.channel
            for c in calls
            if c.initiator != d
        ]
        if not victims:
            return False
        args = close.args or {}
        for c in victims:
            self._unwait(c.request.channel, c)  # type: ignore[union-attr]
            c.response = close
            c.status = args.get("reply-code", 0)
            c.reason = args.get("reply-text", "")
            self._resolve(c)
        self._absorb[close.channel] = self._absorb.get(close.channel, 0) + 1
        return True

    def _on_header(self, d: int, h: ContentHeader) -> None:
        entry = self._contents[d].get(h.channel)
        if entry is None or entry[1].headed:
            self._failed(d, f"content header on channel {h.channel} without a method", h.end_ts)
            return
        call, content = entry
        content.headed = True
        content.size = h.body_size
        content.end_ts = h.end_ts
        if h.properties is None:
            call.flags.append("malformed")
        else:
            content.props = h.properties
        if not h.body_size:
            del self._contents[d][h.channel]
            self._end_content(entry, "")

    def _on_body(self, d: int, b: BodyChunk) -> None:
        entry = self._contents[d].get(b.channel)
        if entry is None or not entry[1].headed:
            return  # a body whose method was lost (a gap, or the capture began mid-message)
        call, content = entry
        data = b.data
        content.received += len(data) + b.lost
        content.end_ts = b.end_ts
        if data:
            room = min(self.max_body - content.kept, self.max_held - self._held, len(data))
            if room > 0:
                content.parts.append(data[:room] if room < len(data) else data)
                content.kept += room
                self._held += room
            if room < len(data) and f"{content.side}_truncated" not in call.flags:
                call.flags.append(f"{content.side}_truncated")
        if b.lost and "gap" not in call.flags:
            call.flags.append("gap")
        if content.received >= content.size:
            if content.received > content.size:
                call.flags.append("malformed")
            del self._contents[d][b.channel]
            self._end_content(entry, "")

    # ------------------------------------------------------------ bookkeeping

    def _wait(self, ch: int, call: Call) -> None:
        self._pending.setdefault(ch, []).append(call)
        self._waiting[id(call)] = call
        if len(self._waiting) > self.max_pending:  # a silent peer or a one-sided capture
            oldest = next(iter(self._waiting.values()))
            self._unwait(oldest.request.channel, oldest)  # type: ignore[union-attr]
            oldest.flags.append("no_response")
            self._resolve(oldest)

    def _unwait(self, ch: int, call: Call) -> None:
        calls = self._pending.get(ch)
        if calls is None or call not in calls:
            return
        calls.remove(call)
        if not calls:
            del self._pending[ch]
        del self._waiting[id(call)]

    def _resolve(self, call: Call) -> None:
        call.resolved = True
        self._ready(call)

    def _start_content(self, d: int, ch: int, call: Call, content: Content) -> None:
        call.open += 1
        self._contents[d][ch] = (call, content)

    def _end_content(self, entry: tuple[Call, Content], why: str) -> None:
        call, content = entry
        self._held -= content.kept
        if why:
            flag = f"{content.side}_{why}"
            if flag not in call.flags:
                call.flags.append(flag)
        call.open -= 1
        self._ready(call)

    def _ready(self, call: Call) -> None:
        if call.resolved and not call.open and not call.emitted:
            call.emitted = True
            self.out.append(self._builder.build(call, self._client_side))

    def _framing_lost(self, d: int) -> None:
        """Framing in direction `d` was lost: cut its messages short; replies it owed
        may be gone."""
        for entry in list(self._contents[d].values()):
            if "gap" not in entry[0].flags:
                entry[0].flags.append("gap")
            self._end_content(entry, "incomplete")
        self._contents[d].clear()
        for calls in self._pending.values():
            for c in calls:
                if c.initiator != d:
                    c.suspect = True

    def _flush(self, flag: str = "") -> None:
        """The connection ended: emit everything still open, flagged."""
        try:
            for d in (0, 1):
                for entry in list(self._contents[d].values()):
                    self._end_content(entry, "incomplete")
                self._contents[d].clear()
            for call in list(self._waiting.values()):
                call.flags.append("no_response")
                call.resolved = True
                self._ready(call)
        finally:  # a call that does not render still leaves the flow idle
            for d in (0, 1):
                self._contents[d].clear()
            self._pending.clear()
            self._waiting.clear()
            self._absorb.clear()


def _answers(request: Method | None, reply: Method) -> bool:
    if request is None:
        return False
    spec = request.spec
    return spec.class_id == reply.spec.class_id and reply.spec.method_id in spec.replies
