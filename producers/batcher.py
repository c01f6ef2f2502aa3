"""Group consecutive segments of one flow into batches: one topic message per batch."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from operator import attrgetter

from schemas.records import Segment, segment_flow_id
from schemas.segment_wire import SegmentColumns, columns_from_segments

MAX_IDS = 1 << 16  # flow ids remembered
_ends = attrgetter("src_ip", "src_port", "dst_ip", "dst_port", "transport")


class FlowBatcher:
    """Pure: `add` returns the batches that became full; `drain` returns the rest.

    Segments of a flow stay in capture order across its batches, and all of a flow's
    batches share one key, so they land on one partition in order.
    """

    def __init__(self, max_segments: int = 256, max_bytes: int = 1024 * 1024) -> None:
        self.max_segments = max_segments
        self.max_bytes = max_bytes
        self._open: dict[str, tuple[list[Segment], list[int]]] = {}
        # (src, sport, dst, dport, transport) -> flow id: formatting the id is most of what
        # a segment costs here, and a flow's segments come by the hundred.
        self._ids: dict[tuple, str] = {}

    def add(self, seg: Segment) -> tuple[str, list[Segment]] | None:
        key = _ends(seg)
        fid = self._ids.get(key)
        if fid is None:
            if len(self._ids) >= MAX_IDS:
                self._ids.clear()
            fid = self._ids[key] = segment_flow_id(seg)
        entry = self._open.get(fid)
        if entry is None:
            entry = self._open[fid] = ([], [0])
        batch, size = entry
        batch.append(seg)
        size[0] += len(seg.payload) + 64
        if len(batch) >= self.max_segments or size[0] >= self.max_bytes:
            del self._open[fid]
            return fid, batch
        return None

    def drain(self) -> list[tuple[str, list[Segment]]]:
        ready = [(fid, batch) for fid, (batch, _) in self._open.items()]
        self._open.clear()
        return ready

    def __len__(self) -> int:
        return len(self._open)


def batch_columns(
    segments: Iterable[Segment], max_segments: int, max_bytes: int
) -> Iterator[SegmentColumns]:
    """`segments` through a `FlowBatcher`, each batch as columns (one message each)."""
    batcher = FlowBatcher(max_segments, max_bytes)
    for seg in segments:
        full = batcher.add(seg)
        if full is not None:
            yield columns_from_segments(*full)
    for fid, batch in batcher.drain():
        yield columns_from_segments(fid, batch)
