"""What several dissectors share beyond the skeleton: the buffering of the length-prefixed
framers (PostgreSQL, MySQL, MongoDB) and the JSON of bodies. The `Dissector` contract
itself is kept by `skeleton.DissectorSkeleton`."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import orjson

_SEQ_MASK = 0xFFFFFFFF
# orjson writes some floats otherwise than Python's repr: an exponent as 1e16 for 1e+16
# and 1e-9 for 1e-09, below 1e-4 0.00001 for 1e-05. With every digit but 0 made a 1, such
# a float shows "1e1", "1e-" or "0.0000"; a body with one (or such text) is written by
# `json`, so bodies stay byte for byte the same. (bytes.find is fast where a regex is not.)
_ONES = bytes.maketrans(b"23456789", b"11111111")


def compact_json(value: Any) -> bytes:
    """`value` as a body's JSON: no spaces, text beyond ASCII kept as is. Callers write
    non-finite floats as text first (JSON has none; orjson would write null)."""
    try:
        out = orjson.dumps(value)
    except TypeError:  # a key that is not a str, an int beyond 64 bits: json's rules
        return _stdlib_json(value)
    ones = out.translate(_ONES)
    if b"1e1" in ones or b"1e-" in ones or b"0.0000" in ones:
        return _stdlib_json(value)
    return out


def _stdlib_json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def result_set(columns: list, rows: list, cut: bool) -> bytes:
    """A SQL result set as a response body, `truncated` when rows were dropped at the cap."""
    doc: dict[str, Any] = {"columns": columns, "rows": rows}
    if cut:
        doc["truncated"] = True
    return compact_json(doc)


class SegmentBuffer:
    """A length-prefixed framer for one direction: bytes are held until a whole message is
    in, with the capture position (TCP sequence number, time) of the first held byte; a
    message over the cap keeps its head (`cut`) and the rest is skipped unheld.

    `feed` does the holding and skipping; a framer writes `_frames` (cut whole messages
    from the held bytes) and may override `_cut_skipped` (the rest of a cut message is
    gone: emit it)."""

    cut: Any  # the message cut at the cap (a frozen dataclass with `body` and `end_ts`)

    def __init__(self) -> None:
        self.buf = bytearray()
        self.seq = 0  # sequence number of buf[0]
        self.ts = 0  # capture time of buf[0]
        self.skip = 0  # bytes still to skip of a message cut at the cap
        self.cut = None

    def reset(self) -> None:
        """Drop what is held: the flow is given up."""
        self.buf.clear()
        self.skip = 0
        self.cut = None

    @property
    def idle(self) -> bool:
        return not self.buf and not self.skip

    @property
    def buffered(self) -> int:
        return len(self.buf) + (len(self.cut.body) if self.cut else 0)

    def feed(self, data: bytes, ts: int, seq: int) -> list[Any]:
        out: list[Any] = []
        if self.skip:
            n = min(self.skip, len(data))
            self.skip -= n
            data, seq = data[n:], (seq + n) & _SEQ_MASK
            if not self.skip:
                self._cut_skipped(ts, out)
            if not data:
                return out
        buf = self.buf
        old = len(buf)
        if not old:
            self.seq, self.ts = seq, ts
        buf += data
        pos = self._frames(buf, old, ts, out)
        del buf[:pos]
        if pos:
            self.seq = (self.seq + pos) & _SEQ_MASK
            if buf:
                self.ts = self.ts if pos < old else ts
        return out

    def _frames(self, buf: bytearray, old: int, ts: int, out: list[Any]) -> int:
        """Append the whole messages at the start of `buf` (its first `old` bytes were held
        from earlier segments) to `out`; return how many bytes they took."""
        raise NotImplementedError

    def _cut_skipped(self, ts: int, out: list[Any]) -> None:
        if self.cut is not None:
            out.append(replace(self.cut, end_ts=ts))
            self.cut = None
