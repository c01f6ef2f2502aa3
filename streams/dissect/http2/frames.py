"""HTTP/2 framing for one direction of a flow: the client preface, 9-byte frame headers,
and frame payloads (parsed by hyperframe), reported to a sink.

DATA payloads are never buffered here: they stream through to the sink as they arrive
(padding removed), so a 16 MiB frame costs no more memory than a 16 byte one. Every other
frame is held until complete, up to `max_frame` bytes; a longer one is skipped (and
reported, because a lost header block breaks HPACK for the rest of the direction).
"""

from __future__ import annotations

from typing import Protocol

from hyperframe.exceptions import HyperframeError
from hyperframe.frame import Frame

from streams.dissect.http2.state import READER_TRANSITIONS, Read, Reader

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
MASK = 0xFFFFFFFF
DEFAULT_MAX_FRAME = 256 * 1024  # a non-DATA frame held whole (default peer limit is 16 KiB)
DATA, HEADERS, PUSH_PROMISE, CONTINUATION = 0x0, 0x1, 0x5, 0x9
END_STREAM, PADDED = 0x1, 0x8

# Module-level names for the hot path: an enum's attribute costs 0.4 µs on Python 3.11.
START, HEAD, BODY, PAD_LENGTH, DATA_BODY, PADDING, SKIP, DEAD = Reader
PREFACE_READ, DATA_HEADER, PADDED_DATA_HEADER, FRAME_HEADER, OVERSIZED_HEADER = tuple(Read)[:5]
PAD_LENGTH_BYTE, DATA_BEFORE_PADDING, FRAME, STOP = tuple(Read)[5:]


class FrameSink(Protocol):
    """What a reader tells its flow (implemented by the dissector)."""

    def on_preface(self, direction: int, ts: int) -> None: ...
    def on_frame(self, direction: int, frame: Frame, ts: int, seq: int, end_ts: int) -> None: ...
    def on_data_start(self, direction: int, stream_id: int, ts: int, seq: int) -> None: ...
    def on_data(self, direction: int, stream_id: int, chunk: bytes) -> None: ...
    def on_data_end(
        self, direction: int, stream_id: int, size: int, end_stream: bool, ts: int
    ) -> None: ...
    def on_skipped(self, direction: int, frame_type: int, stream_id: int, ts: int) -> None: ...
    def on_malformed(self, direction: int, reason: str, ts: int) -> None: ...


class FrameReader:
    """Splits one direction's bytes into frames. `feed` never raises on bad bytes: it
    reports `on_malformed` and stops reading (state DEAD)."""

    __slots__ = (
        "direction",
        "sink",
        "max_frame",
        "state",
        "buf",
        "start_ts",
        "start_seq",
        "ftype",
        "flags",
        "sid",
        "length",
        "left",
        "pad",
        "frame",
    )

    def __init__(self, direction: int, sink: FrameSink, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.direction = direction
        self.sink = sink
        self.max_frame = max_frame
        self.state = START
        self.buf = bytearray()  # a partial preface, frame header or non-DATA frame
        self.start_ts = self.start_seq = 0  # where the frame being read began
        self.ftype = self.flags = self.sid = self.length = 0
        self.left = 0  # payload bytes still to come (DATA_BODY, SKIP) or to collect (BODY)
        self.pad = 0  # padding bytes after the data of a padded DATA frame
        self.frame: Frame | None = None

    @property
    def idle(self) -> bool:
        """Between frames, nothing held."""
        return self.state in (START, HEAD, DEAD) and not self.buf

    @property
    def buffered(self) -> int:
        return len(self.buf)

    def reset(self) -> None:
        """Stop reading: the flow is given up."""
        self._to(STOP)
        self.buf = bytearray()
        self.frame = None

    def feed(self, data: bytes, ts: int, seq: int) -> None:
        i, n = 0, len(data)
        if self.state == START:
            i = self._preface(data, ts, seq)
        while i < n:
            st = self.state
            if st == HEAD:
                buf = self.buf
                if not buf and n - i >= 9:
                    header = data[i : i + 9]
                    self.start_ts, self.start_seq = ts, (seq + i) & MASK
                    i += 9
                else:
                    if not buf:
                        self.start_ts, self.start_seq = ts, (seq + i) & MASK
                    take = min(9 - len(buf), n - i)
                    buf += data[i : i + take]
                    i += take
                    if len(buf) < 9:
                        return
                    header = bytes(buf)
                    buf.clear()
                self._header(header, ts)
            elif st == DATA_BODY:
                take = min(self.left, n - i)
                self.sink.on_data(self.direction, self.sid, data[i : i + take])
                self.left -= take
                i += take
                if not self.left:
                    self._data_body_done(ts)
            elif st == BODY:
                buf = self.buf
                if not buf and n - i >= self.left:
                    payload = data[i : i + self.left]
                    i += self.left
                else:
                    take = min(self.left - len(buf), n - i)
                    buf += data[i : i + take]
                    i += take
                    if len(buf) < self.left:
                        return
                    payload = bytes(buf)
                    buf.clear()
                self._frame_done(payload, ts)
            elif st == PAD_LENGTH:
                self.pad = data[i]
                i += 1
                if self.pad >= self.length:
                    self._malformed("DATA padding longer than the frame", ts)
                    return
                self.left = self.length - 1 - self.pad
                self._to(PAD_LENGTH_BYTE)
                if not self.left:
                    self._data_body_done(ts)
            elif st in (PADDING, SKIP):
                take = min(self.left, n - i)
                self.left -= take
                i += take
                if not self.left:
                    if st == PADDING:
                        self._data_end(ts)
                    else:
                        self._to(FRAME)
            else:  # DEAD
                return

    def _to(self, event: Read) -> None:
        """Move by `event` (a move `READER_TRANSITIONS` lacks raises KeyError: a bug)."""
        self.state = READER_TRANSITIONS.next[self.state][event]

    def _preface(self, data: bytes, ts: int, seq: int) -> int:
        """Consume the client preface if this direction opens with one; else hand every
        byte held back to frame reading. Returns how much of `data` was used."""
        buf = self.buf
        if not buf:
            self.start_ts, self.start_seq = ts, seq
        take = min(len(PREFACE) - len(buf), len(data))
        buf += data[:take]
        if PREFACE.startswith(buf):
            if len(buf) < len(PREFACE):
                return take
            buf.clear()
            self._to(PREFACE_READ)
            self.sink.on_preface(self.direction, self.start_ts)
            return take
        # Not a preface: what was held is frame bytes after all.
        held = bytes(buf[: len(buf) - take])
        buf.clear()
        self._to(PREFACE_READ)
        if held:
            self.feed(held, self.start_ts, self.start_seq)
        return 0

    def _header(self, header: bytes, ts: int) -> None:
        length = int.from_bytes(header[:3], "big")
        ftype, flags = header[3], header[4]
        sid = int.from_bytes(header[5:9], "big") & 0x7FFFFFFF
        self.ftype, self.flags, self.sid, self.length = ftype, flags, sid, length
        if ftype == DATA:
            if not sid:
                self._malformed("DATA frame on stream 0", ts)
                return
            if flags & PADDED and not length:
                self._malformed("padded DATA frame without a pad length", ts)
                return
            self.left = length
            self._to(PADDED_DATA_HEADER if flags & PADDED else DATA_HEADER)
            self.sink.on_data_start(self.direction, sid, self.start_ts, self.start_seq)
            if not length and self.state == DATA_BODY:
                self._data_body_done(ts)
            return
        if length > self.max_frame:
            self.sink.on_skipped(self.direction, ftype, sid, self.start_ts)
            self.left = length
            self._to(OVERSIZED_HEADER)
            return
        try:
            frame, _ = Frame.parse_frame_header(memoryview(header))
        except HyperframeError as e:
            self._malformed(f"bad frame header: {e}", ts)
            return
        self.frame = frame
        self.left = length
        self._to(FRAME_HEADER)
        if not length:
            self._frame_done(b"", ts)

    def _frame_done(self, payload: bytes, ts: int) -> None:
        frame = self.frame
        self.frame = None
        self._to(FRAME)
        try:
            frame.parse_body(memoryview(payload))
        except (HyperframeError, ValueError, IndexError) as e:
            self._malformed(f"bad {type(frame).__name__}: {e}", ts)
            return
        self.sink.on_frame(self.direction, frame, self.start_ts, self.start_seq, ts)

    def _data_body_done(self, ts: int) -> None:
        if self.flags & PADDED and self.pad:
            self.left = self.pad
            self._to(DATA_BEFORE_PADDING)
        else:
            self._data_end(ts)

    def _data_end(self, ts: int) -> None:
        self._to(FRAME)
        size = self.length - (1 + self.pad if self.flags & PADDED else 0)
        self.pad = 0
        self.sink.on_data_end(self.direction, self.sid, size, bool(self.flags & END_STREAM), ts)

    def _malformed(self, reason: str, ts: int) -> None:
        self.reset()
        self.sink.on_malformed(self.direction, reason, ts)
