"""Group consecutive segments of one flow into batches: one topic message per batch."""

from __future__ import annotations

from schemas.records import Segment, segment_flow_id


class FlowBatcher:
    """Pure: `add` returns the batches that became full; `drain` returns the rest.

    Segments of a flow stay in capture order across its batches, and all of a flow's
    batches share one key, so they land on one partition in order.
    """

    def __init__(self, max_segments: int = 256, max_bytes: int = 1024 * 1024) -> None:
        self.max_segments = max_segments
        self.max_bytes = max_bytes
        self._open: dict[str, tuple[list[Segment], list[int]]] = {}

    def add(self, seg: Segment) -> tuple[str, list[Segment]] | None:
        fid = segment_flow_id(seg)
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
