"""What the MySQL framer hands the stitcher: one frozen record per logical packet."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Packet:
    """One MySQL packet (a payload over 16 MiB - 1 already joined from its pieces):
    `seq_id` is the protocol's sequence id, `payload` is cut at the framer's cap
    (`truncated` then says so), `size` counts every byte on the wire, headers included."""

    seq_id: int
    payload: bytes
    seq: int
    ts: int
    end_ts: int
    size: int
    truncated: bool = False
