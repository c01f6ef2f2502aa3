"""What the Kafka framer hands the stitcher: one size-prefixed message of one direction."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Frame:
    seq: int  # TCP sequence number of the size prefix's first byte
    ts: int  # capture time of the segment carrying that byte
    end_ts: int  # capture time of the segment carrying the last byte
    size: int  # the size prefix: bytes after it on the wire
    data: bytes  # the message after the size prefix, at most the parser's cap
    cut: bool = False  # `data` is shorter than `size` (the rest was skipped or lost)
    gap: bool = False  # bytes inside the message were lost
