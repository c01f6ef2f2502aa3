"""RFC 6455 framing for one direction of a WebSocket connection.

Frames are streamed, never buffered whole: a header (at most 14 bytes) is collected, then
payload bytes are unmasked and handed on as they arrive. Data messages (text / binary,
possibly fragmented into continuation frames) are reassembled up to a cap (the wire size
is still counted); control frames (close / ping / pong, at most 125 bytes) may come
between fragments. With permessage-deflate (RFC 7692) the RSV1 bit marks a compressed
message; each direction keeps one decompressor across messages unless the handshake
said that side resets its context ("no_context_takeover").

WebSocket has no resync marker: bytes that break the framing stop the direction (one
`WsFailed`), and so does a gap that does not fall inside a frame of known length.
"""

from __future__ import annotations

import zlib

from streams.dissect.websocket.events import (
    BINARY,
    CONTINUATION,
    CONTROL_OPCODES,
    DATA_OPCODES,
    WsFailed,
    WsMessage,
)
from streams.dissect.websocket.handshake import Handshake
from streams.dissect.websocket.state import (
    DONE,
    HEADER,
    HEADER_READ,
    PAYLOAD,
    PAYLOAD_READ,
    STOP,
    TRANSITIONS,
    Event,
)

MASK = 0xFFFFFFFF
DEFAULT_MAX_MESSAGE = 64 * 1024  # payload bytes kept per message (the size is always counted)
MAX_CONTROL = 125
INFLATE_STEP = 64 * 1024  # inflated bytes produced per zlib call (bounds a decompression bomb)
DEFLATE_TAIL = b"\x00\x00\xff\xff"  # RFC 7692 7.2.2: the sender strips it, the reader adds it

WsEvent = WsMessage | WsFailed


def unmask(data: bytes, key: bytes, offset: int) -> bytes:
    """XOR `data` with the 4-byte masking key, starting at `offset` into the key stream."""
    n = len(data)
    if offset & 3:
        k = offset & 3
        key = key[k:] + key[:k]
    stream = (key * ((n >> 2) + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(stream, "little")).to_bytes(n, "little")


def header_problem(b0: int, b1: int, compressed_ok: bool) -> str:
    """Why a frame header's first two bytes are not a valid frame ("" when they are)."""
    opcode = b0 & 0x0F
    if b0 & 0x30:
        return "reserved bits RSV2/RSV3 set"
    if opcode not in DATA_OPCODES and opcode not in CONTROL_OPCODES and opcode != CONTINUATION:
        return f"reserved opcode {opcode:#x}"
    if b0 & 0x40 and (opcode == CONTINUATION or opcode in CONTROL_OPCODES or not compressed_ok):
        return "RSV1 set without permessage-deflate on a message's first frame"
    if opcode in CONTROL_OPCODES and (not b0 & 0x80 or (b1 & 0x7F) > MAX_CONTROL):
        return "control frame fragmented or longer than 125 bytes"
    return ""


class _Message:
    """A data message being reassembled."""

    __slots__ = ("opcode", "ts", "seq", "parts", "kept", "size", "compressed", "flags", "frames")

    def __init__(self, opcode: int, ts: int, seq: int, compressed: bool) -> None:
        self.opcode = opcode
        self.ts = ts
        self.seq = seq
        self.parts: list[bytes] = []
        self.kept = 0
        self.size = 0
        self.compressed = compressed
        self.flags: list[str] = []
        self.frames = 0


class FrameParser:
    """Frames one direction's bytes into `WsMessage`s (never raises on bad input)."""

    def __init__(
        self, direction: int, handshake: Handshake, max_message: int = DEFAULT_MAX_MESSAGE
    ) -> None:
        self.direction = direction
        self.max_message = max_message
        deflate = handshake.deflate
        self.deflate_ok = deflate is not None or not handshake.known
        if deflate is None:
            self.reset_context = False
        elif direction == 0:
            self.reset_context = deflate.client_no_context_takeover
        else:
            self.reset_context = deflate.server_no_context_takeover
        self.inflater: zlib._Decompress | None = None
        self.head = b""  # a frame header cut by a segment boundary
        self.head_ts = 0
        self.head_seq = 0
        self.remaining = 0  # payload bytes of the current frame not seen yet
        self.state = HEADER  # moves by `state.TRANSITIONS`
        self.opcode = 0
        self.fin = False
        self.key = b""  # masking key of the current frame (b"" when unmasked)
        self.key_offset = 0
        self.frame_ts = 0
        self.frame_seq = 0
        self.control = b""
        self.message: _Message | None = None
        self.out: list[WsEvent] = []

    # ----------------------------------------------------------------- public

    @property
    def idle(self) -> bool:
        st = self.state
        return st == DONE or (st == HEADER and not self.head and self.message is None)

    @property
    def buffered(self) -> int:
        n = len(self.head) + len(self.control)
        if self.message is not None:
            n += self.message.kept
        return n

    def feed(self, data: bytes, ts: int, seq: int) -> list[WsEvent]:
        if self.state == DONE or not data:
            return []
        n = len(data)
        i = 0
        while i < n:
            st = self.state
            if st == PAYLOAD:
                i = self._payload(data, i, ts)
            elif st == HEADER:
                i = self._header(data, i, ts, seq)
            else:
                break
        return self._take()

    def gap(self, size: int, ts: int) -> list[WsEvent]:
        """`size` bytes lost: skip them inside a frame of known length, else stop."""
        if self.state == DONE:
            return []
        if self.state == PAYLOAD and size <= self.remaining:
            self.remaining -= size
            self.key_offset += size
            msg = self.message
            if self.opcode in CONTROL_OPCODES:
                self.control = b""
            elif msg is not None:
                if "gap" not in msg.flags:
                    msg.flags.append("gap")
                if msg.compressed and self.inflater is not None:
                    self.inflater = None  # its window has a hole: later output is unreliable
                    msg.flags.append("decode_error")
            if not self.remaining:
                self._end_frame(ts)
            return self._take()
        self._die(f"{size} bytes lost outside a frame payload: frame boundaries unknown", ts)
        return self._take()

    def close(self, ts: int) -> list[WsEvent]:
        """The connection ended: a message cut short is handed over, flagged."""
        msg = self.message
        if msg is not None and self.state != DONE:
            msg.flags.append("incomplete")
            self._emit_message(ts)
        self.head = b""
        self._to(STOP)
        return self._take()

    def reset(self) -> None:
        """Stop reading and drop what is held: the flow is given up."""
        self._to(STOP)
        self.head = b""
        self.control = b""
        self.message = None

    # ---------------------------------------------------------------- framing

    def _to(self, event: Event) -> None:
        """Move by `event` (a move `TRANSITIONS` lacks raises KeyError: a bug)."""
        self.state = TRANSITIONS.next[self.state][event]

    def _take(self) -> list[WsEvent]:
        out = self.out
        if out:
            self.out = []
        return out

    def _header(self, data: bytes, i: int, ts: int, seq: int) -> int:
        head = self.head
        if not head:
            self.head_ts = ts
            self.head_seq = (seq + i) & MASK
        buf = head + data[i : i + 14] if head else data[i : i + 14]
        if len(buf) < 2:
            self.head = buf
            return len(data)
        b0, b1 = buf[0], buf[1]
        problem = header_problem(b0, b1, self.deflate_ok)
        if problem:
            self._die(problem, ts)
            return len(data)
        length = b1 & 0x7F
        size = 2 + (2 if length == 126 else 8 if length == 127 else 0) + (4 if b1 & 0x80 else 0)
        if len(buf) < size:
            self.head = buf
            return len(data)
        if length == 126:
            length = int.from_bytes(buf[2:4], "big")
        elif length == 127:
            length = int.from_bytes(buf[2:10], "big")
            if length >> 63:
                self._die("64-bit payload length with the top bit set", ts)
                return len(data)
        self.key = buf[size - 4 : size] if b1 & 0x80 else b""
        consumed = size - len(head)
        self.head = b""
        if not self._start_frame(b0, length, ts):
            return len(data)
        if not length:
            self._end_frame(ts)
        return i + consumed

    def _start_frame(self, b0: int, length: int, ts: int) -> bool:
        opcode = b0 & 0x0F
        self.opcode = opcode
        self.fin = bool(b0 & 0x80)
        self.remaining = length
        self.key_offset = 0
        self.frame_ts = self.head_ts
        self.frame_seq = self.head_seq
        self._to(HEADER_READ)
        msg = self.message
        if opcode in CONTROL_OPCODES:
            self.control = b""
            return True
        if opcode == CONTINUATION:
            if msg is None:
                self._die("continuation frame without a message to continue", ts)
                return False
        elif msg is not None:
            self._die("new data message before the previous one ended", ts)
            return False
        else:
            compressed = bool(b0 & 0x40)
            msg = self.message = _Message(opcode, self.head_ts, self.head_seq, compressed)
            if compressed:
                msg.flags.append("compressed")
                if self.inflater is None or self.reset_context:
                    self.inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        msg.frames += 1
        msg.size += length
        return True

    def _payload(self, data: bytes, i: int, ts: int) -> int:
        take = len(data) - i
        if take > self.remaining:
            take = self.remaining
        end = i + take
        opcode = self.opcode
        if opcode in CONTROL_OPCODES:
            chunk = data[i:end]
            if self.key:
                chunk = unmask(chunk, self.key, self.key_offset)
            self.control += chunk
        else:
            msg = self.message
            if msg.compressed:
                if self.inflater is None:
                    pass  # undecodable (flagged): only the size is counted
                elif self.reset_context and msg.kept >= self.max_message:
                    self._truncated(msg)  # no later message needs this one's window
                else:
                    chunk = data[i:end]
                    if self.key:
                        chunk = unmask(chunk, self.key, self.key_offset)
                    self._inflate(msg, chunk)
            elif msg.kept < self.max_message:
                room = self.max_message - msg.kept
                cut = end if take <= room else i + room
                chunk = data[i:cut]
                if self.key:
                    chunk = unmask(chunk, self.key, self.key_offset)
                self._keep(msg, chunk)
                if cut != end:
                    self._truncated(msg)
            elif take:
                self._truncated(msg)
        self.key_offset += take
        self.remaining -= take
        if not self.remaining:
            self._end_frame(ts)
        return end

    def _end_frame(self, ts: int) -> None:
        self._to(PAYLOAD_READ)
        opcode = self.opcode
        if opcode in CONTROL_OPCODES:
            payload = self.control
            self.control = b""
            self.out.append(
                WsMessage(
                    self.direction,
                    opcode,
                    payload,
                    len(payload),
                    self.frame_ts,
                    ts,
                    self.frame_seq,
                )
            )
            return
        if self.fin:
            msg = self.message
            if msg.compressed and self.inflater is not None:
                self._inflate(msg, DEFLATE_TAIL)
            self._emit_message(ts)

    def _emit_message(self, ts: int) -> None:
        msg = self.message
        self.message = None
        if msg.compressed and self.reset_context:
            self.inflater = None
        if msg.frames > 1:
            msg.flags.append("fragmented")
        parts = msg.parts
        payload = parts[0] if len(parts) == 1 else b"".join(parts)
        opcode = msg.opcode if msg.opcode in DATA_OPCODES else BINARY
        self.out.append(
            WsMessage(
                self.direction, opcode, payload, msg.size, msg.ts, ts, msg.seq, tuple(msg.flags)
            )
        )

    def _keep(self, msg: _Message, chunk: bytes) -> None:
        room = self.max_message - msg.kept
        if len(chunk) > room:
            chunk = chunk[:room]
            self._truncated(msg)
        if chunk:
            msg.parts.append(chunk)
            msg.kept += len(chunk)

    @staticmethod
    def _truncated(msg: _Message) -> None:
        if "truncated" not in msg.flags:
            msg.flags.append("truncated")

    def _inflate(self, msg: _Message, chunk: bytes) -> None:
        d = self.inflater
        try:
            out = d.decompress(chunk, INFLATE_STEP)
            self._keep(msg, out)
            while len(out) == INFLATE_STEP or d.unconsumed_tail:
                out = d.decompress(d.unconsumed_tail, INFLATE_STEP)
                self._keep(msg, out)
                if not out:
                    break
        except zlib.error:
            msg.flags.append("decode_error")
            self.inflater = None  # the next compressed message starts a fresh context

    def _die(self, reason: str, ts: int) -> None:
        msg = self.message
        if msg is not None:
            msg.flags.append("malformed")
            msg.flags.append("incomplete")
            self._emit_message(ts)
        self.out.append(WsFailed(self.direction, reason, ts))
        self._to(STOP)
        self.head = b""
        self.control = b""
