"""The buffering several length-prefixed framers share (PostgreSQL, MySQL, MongoDB); the
`Dissector` contract itself is kept by `skeleton.DissectorSkeleton`."""

from __future__ import annotations


class SegmentBuffer:
    """What a length-prefixed framer holds for one direction: bytes until a whole message
    is in, with the capture position (TCP sequence number, time) of the first held byte,
    and how much of a message cut at the cap is still to be skipped unheld.

    Appending to `buf` and dropping framed bytes stay inline in each framer's `feed`: they
    run once a segment, where a method call shows in the benchmarks."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.seq = 0  # sequence number of buf[0]
        self.ts = 0  # capture time of buf[0]
        self.skip = 0  # bytes still to skip of a message cut at the cap

    def reset(self) -> None:
        """Drop what is held: the flow is given up."""
        self.buf.clear()
        self.skip = 0

    def _skip(self, data: bytes, seq: int) -> tuple[bytes, int]:
        """`data` and its sequence number without what remains of the cut message."""
        n = min(self.skip, len(data))
        self.skip -= n
        return data[n:], (seq + n) & 0xFFFFFFFF
