"""Split one direction of an AMQP 0-9-1 connection into frames.

Frames are type (1 byte), channel (2), payload size (4), payload, 0xCE. Method and content
header frames are held until whole (at most `max_frame` payload bytes); body frames are
passed on in pieces as they arrive, so a large message never sits in a buffer here.
After bytes that are not framing (or a gap that cannot be bridged) the framer resyncs: it
looks for a method frame of a known class with its end marker where it should be, or a
heartbeat, and goes on from there.
"""

from __future__ import annotations

import re
from enum import Enum
from struct import Struct

from streams.dissect.amqp.events import (
    BodyChunk,
    ContentHeader,
    Frame,
    FrameError,
    Method,
    ProtocolHeader,
)
from streams.dissect.amqp.spec import (
    FRAME_BODY,
    FRAME_END,
    FRAME_HEADER,
    FRAME_HEARTBEAT,
    FRAME_METHOD,
    METHODS,
)
from streams.dissect.amqp.wire import decode_args, decode_properties
from streams.dissect.base import DissectError
from streams.dissect.skeleton import Transitions

DEFAULT_MAX_FRAME = 256 * 1024  # method / header payload bytes held; RabbitMQ's default is 128 KiB
_HEAD = Struct(">BHI")
_IDS = Struct(">HH")
_BODY_SIZE = Struct(">Q")
# The fewest payload bytes of each frame type: a method's ids; a content header's class,
# weight, body size and property flags; a heartbeat's none (it carries none).
_LEAST_PAYLOAD = {FRAME_METHOD: 4, FRAME_HEADER: 14, FRAME_HEARTBEAT: 0}
# What the first 4 payload bytes may be: a method's (class, method), a header's (class, 0).
_OPENINGS = {
    FRAME_METHOD: frozenset(METHODS),
    FRAME_HEADER: frozenset((spec.class_id, 0) for spec in METHODS.values() if spec.content),
}
_SEQ_MASK = 0xFFFFFFFF
# A method frame of a known class (size < 16 MiB) or a heartbeat: where resyncing may resume.
_ANCHOR = re.compile(
    rb"\x01[\x00-\xff]{2}\x00[\x00-\xff]{3}\x00[\x0a\x14\x28\x32\x3c\x55\x5a]"
    rb"|\x08\x00\x00\x00\x00\x00\x00\xce",
    re.S,
)


class Framing(Enum):
    FRAMES = "frames"  # at a frame boundary, or a method / header frame held until whole
    BODY = "body"  # inside a body frame, its payload passed on as it comes
    BODY_END = "body_end"  # the body frame's end marker is next
    RESYNC = "resync"  # framing lost: scanning for an anchor frame


FRAMES, BODY, BODY_END, RESYNC = Framing.FRAMES, Framing.BODY, Framing.BODY_END, Framing.RESYNC


class Step(Enum):
    """What moves the `Framing`."""

    BODY_FRAME = "body_frame"
    EMPTY_BODY_FRAME = "empty_body_frame"
    BODY_READ = "body_read"
    END_MARKER = "end_marker"
    ANCHOR_FOUND = "anchor_found"
    LOST = "lost"


_LOST = {Step.LOST: RESYNC}
STEPS = Transitions(
    {
        FRAMES: {Step.BODY_FRAME: BODY, Step.EMPTY_BODY_FRAME: BODY_END, **_LOST},
        BODY: {Step.BODY_READ: BODY_END, **_LOST},
        BODY_END: {Step.END_MARKER: FRAMES, **_LOST},
        RESYNC: {Step.ANCHOR_FOUND: FRAMES, **_LOST},
    }
)


class FrameParser:
    """One direction's framer: `feed` bytes in order, get frame events back."""

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.max_frame = max_frame
        self.mode = FRAMES
        self.buf = bytearray()  # an incomplete frame (FRAMES) or unparsed bytes (RESYNC)
        self.buf_ts = 0
        self.buf_seq = 0
        self.channel = 0  # the body frame being streamed
        self.remaining = 0  # payload bytes left in that body frame
        self.expect: dict[int, int] = {}  # channel -> body bytes its content header announced

    @property
    def idle(self) -> bool:
        """No frame half-read (bytes held while resyncing are junk already reported)."""
        return self.mode == RESYNC or (self.mode == FRAMES and not self.buf)

    @property
    def buffered(self) -> int:
        return len(self.buf)

    # ------------------------------------------------------------------ input

    def feed(self, data: bytes, ts: int, seq: int) -> list[Frame]:
        out: list[Frame] = []
        pos, n = 0, len(data)
        while pos < n:
            mode = self.mode
            if mode == FRAMES:
                if self.buf:
                    pos = self._complete(data, pos, ts, out)
                else:
                    pos = self._frames(data, pos, ts, seq, out)
            elif mode == BODY:
                k = min(self.remaining, n - pos)
                out.append(BodyChunk(self.channel, data[pos : pos + k], 0, ts))
                pos += k
                self.remaining -= k
                if not self.remaining:
                    self.mode = STEPS(mode, Step.BODY_READ)
            elif mode == BODY_END:
                if data[pos] == FRAME_END:
                    pos += 1
                    self.mode = STEPS(mode, Step.END_MARKER)
                else:
                    self._lost("body frame without its end marker", ts, out)
            else:
                pos = self._resync(data, pos, ts, seq, out)
        return out

    def gap(self, size: int, ts: int) -> tuple[list[Frame], bool]:
        """`size` bytes were lost. Inside a body frame the frame goes on (the loss is
        reported as a chunk with `lost` bytes); elsewhere the framer resyncs. Returns the
        events and whether framing was lost."""
        if self.mode == BODY and size <= self.remaining:
            self.remaining -= size
            if not self.remaining:
                self.mode = STEPS(self.mode, Step.BODY_READ)
            return [BodyChunk(self.channel, b"", size, ts)], False
        self._resync_from_here()
        return [], True

    def reset(self) -> None:
        """The flow is given up: drop what is held."""
        self._resync_from_here()

    def _resync_from_here(self) -> None:
        self.buf.clear()
        self.expect.clear()
        self.mode = STEPS(self.mode, Step.LOST)

    # ---------------------------------------------------------------- framing

    def _frames(self, data: bytes, pos: int, ts: int, seq: int, out: list[Frame]) -> int:
        """Whole frames straight from `data`; an incomplete tail is buffered."""
        n = len(data)
        while pos < n:
            if data[pos] == 0x41:  # "AMQP" and a version
                if n - pos < 8:
                    self._hold(data[pos:], ts, seq + pos)
                    return n
                if not self._protocol_header(data[pos : pos + 8], ts, out):
                    return pos
                pos += 8
                continue
            if n - pos < 7:
                self._hold(data[pos:], ts, seq + pos)
                return n
            kind, channel, size = _HEAD.unpack_from(data, pos)
            if not self._check_head(kind, channel, size, ts, out):
                return pos
            if kind == FRAME_BODY:
                self._body(channel, size)
                return pos + 7
            if kind != FRAME_HEARTBEAT:
                if n - pos < 11:
                    self._hold(data[pos:], ts, seq + pos)
                    return n
                if not self._known_opening(kind, data, pos + 7, ts, out):
                    return pos
            end = pos + 7 + size
            if end >= n:
                self._hold(data[pos:], ts, seq + pos)
                return n
            if data[end] != FRAME_END:
                self._lost(f"frame type {kind} without its end marker", ts, out)
                return pos + 1
            self._frame(kind, channel, data, pos + 7, end, ts, ts, seq + pos, out)
            pos = end + 1
        return pos

    def _body(self, channel: int, size: int) -> None:
        left = self.expect[channel] - size
        if left:
            self.expect[channel] = left
        else:
            del self.expect[channel]
        self.mode = STEPS(self.mode, Step.BODY_FRAME if size else Step.EMPTY_BODY_FRAME)
        self.channel, self.remaining = channel, size

    def _complete(self, data: bytes, pos: int, ts: int, out: list[Frame]) -> int:
        """Add bytes to the buffered frame head or frame; handle it once whole."""
        buf = self.buf
        n = len(data)
        if buf[0] == 0x41:
            take = min(8 - len(buf), n - pos)
            buf += data[pos : pos + take]
            if len(buf) == 8:
                head = bytes(buf)
                buf.clear()
                if not self._protocol_header(head, self.buf_ts, out):
                    buf += head[1:]
            return pos + take
        if len(buf) < 7:
            take = min(7 - len(buf), n - pos)
            buf += data[pos : pos + take]
            pos += take
            if len(buf) < 7:
                return pos
            kind, channel, size = _HEAD.unpack_from(buf, 0)
            head = bytes(buf)
            if not self._check_head(kind, channel, size, ts, out):
                buf += head[1:]  # (the check emptied it) scanned for a good frame next
                return pos
            if kind == FRAME_BODY:
                buf.clear()
                self._body(channel, size)
                return pos
        kind, channel, size = _HEAD.unpack_from(buf, 0)
        if kind != FRAME_HEARTBEAT and len(buf) < 11:
            take = min(11 - len(buf), n - pos)
            buf += data[pos : pos + take]
            pos += take
            if len(buf) < 11:
                return pos
            head = bytes(buf)
            if not self._known_opening(kind, head, 7, ts, out):
                buf += head[1:]
                return pos
        take = min(8 + size - len(buf), n - pos)
        buf += data[pos : pos + take]
        pos += take
        if len(buf) < 8 + size:
            return pos
        frame = bytes(buf)
        buf.clear()
        if frame[-1] != FRAME_END:
            self._lost(f"frame type {kind} without its end marker", ts, out)
            self.buf += frame[1:]
            return pos
        self._frame(kind, channel, frame, 7, 7 + size, self.buf_ts, ts, self.buf_seq, out)
        return pos

    def _check_head(self, kind: int, channel: int, size: int, ts: int, out: list[Frame]) -> bool:
        """A frame head worth following; else resync. A size over the cap (or a body frame
        larger than what its message still lacks) is taken for junk rather than skipped:
        trusting it could swallow the rest of the flow."""
        if kind == FRAME_BODY:
            if size <= self.expect.get(channel, -1):
                return True
            self._lost(f"body frame of {size} bytes on channel {channel} not announced", ts, out)
            return False
        least = _LEAST_PAYLOAD.get(kind)
        if least is None:
            self._lost(f"unknown frame type {kind}", ts, out)
            return False
        if size > self.max_frame:
            self._lost(f"{size}-byte frame type {kind} over the cap", ts, out)
            return False
        if size < least or (kind == FRAME_HEARTBEAT and size):
            self._lost(f"frame type {kind} cannot carry {size} bytes", ts, out)
            return False
        return True

    def _known_opening(
        self, kind: int, buf: bytes | bytearray, at: int, ts: int, out: list[Frame]
    ) -> bool:
        """A method frame's first 4 payload bytes (at `at`) name a method of the spec, a
        content header's a content class and weight 0; else it is junk that announced a
        frame, and holding it could swallow the rest of the flow."""
        opening = _IDS.unpack_from(buf, at)
        if opening in _OPENINGS[kind]:
            return True
        self._lost(f"frame type {kind} opening with {opening[0]}.{opening[1]}", ts, out)
        return False

    def _hold(self, chunk: bytes, ts: int, seq: int) -> None:
        self.buf += chunk
        self.buf_ts, self.buf_seq = ts, seq & _SEQ_MASK

    def _protocol_header(self, head: bytes, ts: int, out: list[Frame]) -> bool:
        if head[:4] != b"AMQP":
            self._lost("bytes that are not AMQP framing", ts, out)
            return False
        out.append(ProtocolHeader(head[4:], ts))
        return True

    def _frame(
        self,
        kind: int,
        channel: int,
        buf: bytes,
        start: int,
        end: int,
        ts: int,
        end_ts: int,
        seq: int,
        out: list[Frame],
    ) -> None:
        if kind == FRAME_HEARTBEAT:
            return
        size = end - start
        if kind == FRAME_METHOD:
            spec = METHODS[_IDS.unpack_from(buf, start)]  # known: checked at its head
            try:
                args = decode_args(buf, start + 4, end, spec.args)
            except DissectError:
                args = None
            self.expect.pop(channel, None)  # a method ends any content before it
            out.append(Method(channel, spec, args, size, ts, seq & _SEQ_MASK, end_ts))
            return
        body_size = _BODY_SIZE.unpack_from(buf, start + 4)[0]
        try:
            props = decode_properties(buf, start + 12, end)
        except DissectError:
            props = None
        if body_size:
            self.expect[channel] = body_size
        else:
            self.expect.pop(channel, None)
        out.append(ContentHeader(channel, body_size, props, end_ts))

    # ---------------------------------------------------------------- resync

    def _lost(self, reason: str, ts: int, out: list[Frame]) -> None:
        """Framing is lost: report it once and look for the next good frame."""
        out.append(FrameError(reason, ts))
        self._resync_from_here()

    def _resync(self, data: bytes, pos: int, ts: int, seq: int, out: list[Frame]) -> int:
        """Scan held and new bytes for an anchor frame and resume framing at it."""
        buf = self.buf
        old = len(buf)
        buf += data[pos:]
        end_seq = seq + len(data)  # the sequence number just after `buf`
        scan = 0
        waiting = -1  # the first candidate still missing bytes
        while True:
            m = _ANCHOR.search(buf, scan)
            if m is None:
                if waiting >= 0:
                    del buf[:waiting]  # hold that candidate until it can be checked
                else:
                    del buf[: max(0, len(buf) - 10)]  # an anchor may begin in the last bytes
                break
            p = m.start()
            if buf[p] == FRAME_METHOD:
                size = int.from_bytes(buf[p + 3 : p + 7], "big")
                if size > self.max_frame or size < 4:
                    scan = p + 1
                    continue
                if len(buf) >= p + 11 and _IDS.unpack_from(buf, p + 7) not in METHODS:
                    scan = p + 1
                    continue
                if len(buf) < p + 8 + size:
                    # A later candidate that checks out wins over one we cannot check yet
                    # (else junk announcing a large frame would stall the flow).
                    if waiting < 0:
                        waiting = p
                    scan = p + 1
                    continue
                if buf[p + 7 + size] != FRAME_END:
                    scan = p + 1
                    continue
            self.mode = STEPS(self.mode, Step.ANCHOR_FOUND)
            if p >= old:  # the anchor is in the new bytes: frame on from there
                buf.clear()
                return pos + p - old
            # It began in held bytes, which may hold more than that frame: frame them again
            # from the anchor, then go on with `data`.
            held = bytes(buf[p:old])
            held_seq = (end_seq - (len(buf) - p)) & _SEQ_MASK
            buf.clear()
            out.extend(self.feed(held, self.buf_ts, held_seq))
            return pos
        self.buf_ts, self.buf_seq = ts, (end_seq - len(buf)) & _SEQ_MASK
        return len(data)
