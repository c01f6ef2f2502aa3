"""Kafka's primitive types over a bytes buffer, and record batch counting.

`Reader` reads big-endian ints, unsigned varints, classic (int16/int32 length) and
compact (varint length + 1) strings, bytes and arrays, and skips tagged fields. Reading
past the end raises `Truncated`; a length that cannot be right raises `Malformed`.
"""

from __future__ import annotations

import base64
import struct

from streams.dissect.base import DissectError

_I8 = struct.Struct(">b").unpack_from
_I16 = struct.Struct(">h").unpack_from
_I32 = struct.Struct(">i").unpack_from
_I64 = struct.Struct(">q").unpack_from

MAX_ARRAY = 1 << 20  # an array longer than this is not a real message


class Truncated(DissectError):
    """The message ended before the field (a frame cut by the buffer cap)."""


class Malformed(DissectError):
    """A field that cannot be right (negative or impossible length, bad varint)."""


class Reader:
    __slots__ = ("buf", "pos", "end", "flexible")

    def __init__(self, buf: bytes, pos: int = 0, flexible: bool = False) -> None:
        self.buf = buf
        self.pos = pos
        self.end = len(buf)
        self.flexible = flexible

    def _need(self, n: int) -> int:
        p = self.pos
        if p + n > self.end:
            raise Truncated(f"need {n} bytes at {p}, have {self.end - p}")
        self.pos = p + n
        return p

    def int8(self) -> int:
        return _I8(self.buf, self._need(1))[0]

    def int16(self) -> int:
        return _I16(self.buf, self._need(2))[0]

    def int32(self) -> int:
        return _I32(self.buf, self._need(4))[0]

    def int64(self) -> int:
        return _I64(self.buf, self._need(8))[0]

    def boolean(self) -> bool:
        return self.int8() != 0

    def skip(self, n: int) -> None:
        if n < 0:
            raise Malformed(f"negative length {n}")
        self._need(n)

    def uvarint(self) -> int:
        buf = self.buf
        value = shift = 0
        while True:
            p = self._need(1)
            b = buf[p]
            value |= (b & 0x7F) << shift
            if b < 0x80:
                return value
            shift += 7
            if shift > 28:
                raise Malformed("unsigned varint longer than 5 bytes")

    def uuid(self) -> str:
        """Kafka's text form of a topic id: URL-safe base64 without padding."""
        p = self._need(16)
        return base64.urlsafe_b64encode(self.buf[p : p + 16]).decode("ascii").rstrip("=")

    # -- lengths: -1 is null; flexible versions store length + 1 as a varint -------------
    def _str_len(self) -> int:
        n = self.uvarint() - 1 if self.flexible else self.int16()
        if n < -1:
            raise Malformed(f"string length {n}")
        return n

    def _bytes_len(self) -> int:
        n = self.uvarint() - 1 if self.flexible else self.int32()
        if n < -1:
            raise Malformed(f"bytes length {n}")
        return n

    def string(self) -> str | None:
        n = self._str_len()
        if n < 0:
            return None
        p = self._need(n)
        return self.buf[p : p + n].decode("utf-8", "replace")

    def skip_string(self) -> None:
        n = self._str_len()
        if n > 0:
            self._need(n)

    def bytes_span(self) -> tuple[int, int] | None:
        """(start, length) of a bytes field, which is skipped; None when null. The length
        is cut to what the buffer holds when the message is truncated."""
        n = self._bytes_len()
        if n < 0:
            return None
        p = self.pos
        if p + n > self.end:
            self.pos = self.end
            return p, self.end - p
        self.pos = p + n
        return p, n

    def array_len(self) -> int:
        """Element count of an array; -1 for a null array."""
        n = self.uvarint() - 1 if self.flexible else self.int32()
        if n < -1 or n > MAX_ARRAY:
            raise Malformed(f"array length {n}")
        return n

    def int32_array(self) -> list[int]:
        n = self.array_len()
        return [self.int32() for _ in range(n)] if n > 0 else []

    def tagged_fields(self) -> None:
        """Skip a tagged-field section (flexible versions only)."""
        if not self.flexible:
            return
        p = self.pos
        if p < self.end and not self.buf[p]:  # the usual case: no tagged fields
            self.pos = p + 1
            return
        for _ in range(self.uvarint()):
            self.uvarint()  # tag
            self.skip(self.uvarint())


_BATCH_HEADER = 61  # record batch v2 header size up to and including the records count


def count_records(buf: bytes, start: int, length: int) -> tuple[int, bool]:
    """Records in a record set (batches v2, or legacy message sets counted one per entry)
    without decompressing: (count, complete). A batch cut off at the end of the set
    (brokers cut fetch responses at the size limit) is not counted and `complete` is False.
    Control batches (transaction markers) are not data and are not counted."""
    count = 0
    p = start
    end = start + length
    while p + 17 <= end:
        batch_len = _I32(buf, p + 8)[0]
        if batch_len < 0:
            raise Malformed(f"record batch length {batch_len}")
        total = 12 + batch_len
        if p + total > end:
            return count, False
        magic = buf[p + 16]
        if magic >= 2:
            if batch_len < _BATCH_HEADER - 12:
                raise Malformed(f"record batch length {batch_len}")
            if not buf[p + 22] & 0x20:  # attributes bit 5: control batch
                count += _I32(buf, p + 57)[0]
        else:
            count += 1
        p += total
    return count, p == end
