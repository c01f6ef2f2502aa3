"""RESP2/RESP3 framing for one direction of a Redis connection, incremental and capped.

Lines are found with one C-level search each; bulk payloads are streamed (never searched,
never buffered whole): a bulk string keeps at most what the message's byte budget allows
and counts the rest, so a 500 MB value costs no more memory than a small one. Requests
may also be inline commands (`PING\\r\\n`), as redis-server accepts them.
"""

from __future__ import annotations

import shlex
from typing import Any

from streams.dissect.base import DissectError
from streams.dissect.redis.events import Cut, Partial, Push, RespError, RespMap, RespMessage

MASK = 0xFFFFFFFF
DEFAULT_MAX_BODY = 64 * 1024  # bulk bytes kept per message
MAX_ITEMS = 4096  # values kept per message; more are counted, not kept
MAX_LINE = 64 * 1024  # a type line or inline command
MAX_DEPTH = 32  # nested aggregates
MAX_COUNT = 1 << 32  # an aggregate or bulk length beyond this is not Redis

# Aggregate kinds.
_ARRAY, _MAP, _PUSH, _ATTR = range(4)
_AGGREGATES = {42: _ARRAY, 126: _ARRAY, 37: _MAP, 62: _PUSH, 124: _ATTR}  # * ~ % > |
_BULKS = {36: 0, 33: 1, 61: 2}  # $ bulk string, ! bulk error, = verbatim string
_DROP = object()  # an attribute: metadata we read and drop


class _Frame:
    __slots__ = ("kind", "left", "items", "omitted")

    def __init__(self, kind: int, count: int) -> None:
        self.kind = kind
        self.left = count
        self.items: list[Any] = []
        self.omitted = 0

    def build(self) -> Any:
        if self.kind == _ATTR:
            return _DROP
        items = self.items
        if self.kind == _MAP:
            pairs = tuple(zip(items[::2], items[1::2], strict=False))
            return RespMap(pairs, (self.omitted + 1) // 2)
        if self.kind == _PUSH:
            return Push(items, self.omitted)
        return Partial(items, self.omitted) if self.omitted else items


def _int(line: bytes | bytearray, what: str) -> int:
    try:
        return int(line)
    except ValueError:
        raise DissectError(f"bad {what} {bytes(line[:32])!r}") from None


def _length(line: bytes | bytearray, what: str) -> int:
    """A bulk or aggregate length: -1 (null) or up to MAX_COUNT."""
    n = _int(line, what)
    if -1 <= n <= MAX_COUNT:
        return n
    raise DissectError(f"bad {what} {n}" if n < 0 else f"{what} {n} too large")


def _text(b: bytes | bytearray) -> str:
    return bytes(b).decode("utf-8", "replace")


def inline_args(line: bytes) -> list[bytes]:
    """Split an inline command the way redis-server does: spaces, with quoted arguments."""
    try:
        return [a.encode("utf-8", "surrogateescape") for a in
                shlex.split(line.decode("utf-8", "surrogateescape"))]  # fmt: skip
    except ValueError:
        return line.split()


class RespParser:
    """Feeds bytes in, returns complete top-level messages. Raises `DissectError` on bytes
    that are not RESP; the caller decides what happens to the flow then."""

    __slots__ = (
        "requests", "max_body", "buf", "buf_seq", "buf_ts", "stack", "bulk_left",
        "bulk_kind", "bulk_size", "bulk_parts", "kept", "items", "cut", "start_seq",
        "start_ts", "start_abs", "consumed", "busy",
    )  # fmt: skip

    def __init__(self, requests: bool, max_body: int = DEFAULT_MAX_BODY) -> None:
        self.requests = requests  # the client side: inline commands allowed
        self.max_body = max_body
        self.buf = bytearray()
        self.buf_seq = 0
        self.buf_ts = 0
        self.stack: list[_Frame] = []
        self.bulk_left = 0  # payload + CRLF bytes still to come of the current bulk
        self.bulk_kind = 0
        self.bulk_size = 0
        self.bulk_parts: list[bytes] = []
        self.kept = 0  # bulk bytes kept in the current message
        self.items = 0  # values kept in the current message
        self.cut = False
        self.start_seq = self.start_ts = self.start_abs = 0
        self.consumed = 0  # stream bytes dropped from the front of buf
        self.busy = False  # inside a message

    @property
    def idle(self) -> bool:
        return not self.busy and not self.buf

    @property
    def buffered(self) -> int:
        return len(self.buf) + self.kept + sum(len(p) for p in self.bulk_parts)

    def reset(self) -> None:
        """Forget the message in progress (bytes were lost)."""
        self.buf = bytearray()
        self.stack = []
        self.bulk_left = 0
        self.bulk_parts = []
        self.busy = False

    def feed(self, data: bytes, ts: int, seq: int) -> list[RespMessage]:
        buf = self.buf
        if not buf:
            self.buf_seq, self.buf_ts = seq, ts
        old = len(buf)
        buf += data
        out: list[RespMessage] = []
        pos = 0
        n = len(buf)
        try:
            while pos < n:
                if self.bulk_left:
                    pos = self._bulk(buf, pos, n, ts, out)
                    continue
                if not self.busy:
                    self.busy = True
                    self.start_abs = self.consumed + pos
                    self.start_seq = (self.buf_seq + pos) & MASK
                    self.start_ts = self.buf_ts if pos < old else ts
                    self.kept = self.items = 0
                    self.cut = False
                    if self.requests and buf[pos] != 42:  # not "*": an inline command
                        end = buf.find(b"\n", pos)
                        if end < 0:
                            self._check_line(n - pos)
                            self.busy = False
                            break
                        line = bytes(buf[pos:end]).rstrip(b"\r")
                        pos = end + 1
                        args = inline_args(line)
                        if args:
                            self._done(args, pos, ts, out, inline=True)
                        else:
                            self.busy = False  # an empty line: redis-server skips it
                        continue
                end = buf.find(b"\r\n", pos)
                if end < 0:
                    self._check_line(n - pos)
                    break
                self._line(buf, pos, end, ts, out)
                pos = end + 2
        finally:
            del buf[:pos]
            self.consumed += pos
            self.buf_seq = (self.buf_seq + pos) & MASK
            if pos >= old:
                self.buf_ts = ts
        return out

    # ----------------------------------------------------------------- internals

    def _check_line(self, size: int) -> None:
        if size > MAX_LINE:
            raise DissectError(f"no line end within {MAX_LINE} bytes")

    def _line(self, buf: bytearray, pos: int, end: int, ts: int, out: list) -> None:
        t = buf[pos]
        body = buf[pos + 1 : end]
        if t == 43:  # + simple string
            self._value(_text(body), end + 2, ts, out)
        elif t == 58 or t == 40:  # : integer, ( big number
            self._value(_int(body, "integer"), end + 2, ts, out)
        elif t in _BULKS:
            size = _length(body, "bulk length")
            if size < 0:
                self._value(None, end + 2, ts, out)
                return
            self.bulk_kind = _BULKS[t]
            self.bulk_size = size
            self.bulk_left = size + 2
            self.bulk_parts = []
        elif t in _AGGREGATES:
            count = _length(body, "aggregate length")
            kind = _AGGREGATES[t]
            if count < 0:
                self._value(None, end + 2, ts, out)
                return
            if kind == _MAP or kind == _ATTR:
                count *= 2
            if count == 0:
                if kind == _ATTR:
                    return
                self._value(_Frame(kind, 0).build(), end + 2, ts, out)
                return
            if len(self.stack) >= MAX_DEPTH:
                raise DissectError(f"aggregates nested deeper than {MAX_DEPTH}")
            self.stack.append(_Frame(kind, count))
        elif t == 45:  # - error
            self._value(RespError(_text(body)), end + 2, ts, out)
        elif t == 95:  # _ null
            self._value(None, end + 2, ts, out)
        elif t == 35:  # # boolean
            if body not in (b"t", b"f"):
                raise DissectError(f"bad boolean {bytes(body[:8])!r}")
            self._value(body == b"t", end + 2, ts, out)
        elif t == 44:  # , double
            try:
                value: Any = float(body)
            except ValueError:
                raise DissectError(f"bad double {bytes(body[:32])!r}") from None
            self._value(value, end + 2, ts, out)
        else:
            raise DissectError(f"unknown RESP type byte {bytes([t])!r}")

    def _bulk(self, buf: bytearray, pos: int, n: int, ts: int, out: list) -> int:
        take = min(self.bulk_left, n - pos)
        payload_left = self.bulk_left - 2  # payload bytes still due (may be -1, -2: CRLF)
        if payload_left > 0:
            part = min(take, payload_left)
            room = self.max_body - self.kept
            if room > 0:
                keep = buf[pos : pos + min(part, room)]
                self.bulk_parts.append(bytes(keep))
                self.kept += len(keep)
        self.bulk_left -= take
        pos += take
        if self.bulk_left == 0:
            if take >= 2 and buf[pos - 2 : pos] != b"\r\n":
                raise DissectError("bulk string not followed by CRLF")
            data = b"".join(self.bulk_parts)
            self.bulk_parts = []
            value: Any
            if len(data) < self.bulk_size:
                value = Cut(data, self.bulk_size)
                self.cut = True
            else:
                value = data
            if self.bulk_kind == 1:
                value = RespError(_text(data))
            elif self.bulk_kind == 2 and isinstance(value, bytes):
                value = value[4:]  # verbatim: drop the "txt:" format
            self._value(value, pos, ts, out)
        return pos

    def _value(self, v: Any, pos: int, ts: int, out: list) -> None:
        stack = self.stack
        while stack:
            top = stack[-1]
            if self.items < MAX_ITEMS:
                top.items.append(v)
                self.items += 1
            else:
                top.omitted += 1
                self.cut = True
            top.left -= 1
            if top.left:
                return
            stack.pop()
            v = top.build()
            if v is _DROP:
                return  # an attribute: the value it describes comes next
        if v is _DROP:
            return
        self._done(v, pos, ts, out)

    def _done(self, v: Any, pos: int, ts: int, out: list, inline: bool = False) -> None:
        size = self.consumed + pos - self.start_abs
        out.append(RespMessage(v, self.start_seq, self.start_ts, ts, size, self.cut, inline))
        self.busy = False
