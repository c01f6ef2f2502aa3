"""Hold a capture's segment batches while the pipeline starts, so capture need not wait for
Kafka: batches are kept in memory up to a bound, then spilled to a file, and handed to the
real publisher in the order they came once it is there. Nothing is dropped."""

from __future__ import annotations

import struct
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from schemas.records import Segment

Publish = Callable[[str, list[Segment]], None]

_FRAME = struct.Struct("<II")  # flow length, batch length
_PER_SEGMENT = 300  # what a Segment takes in memory besides its payload (measured ~264 B + bytes)


class SegmentSpool:
    """`publish(flow, segments)` like a publisher's. Until `attach(publish)` the batches are
    kept (`memory_bytes` in memory, the rest in an unlinked file under `spill_dir`); attach
    hands them over in order, and every later batch goes straight through."""

    def __init__(self, memory_bytes: int = 32 << 20, spill_dir: Path | None = None) -> None:
        self.memory_bytes = memory_bytes
        self.spill_dir = spill_dir
        self.batches = 0  # held since the start (what waited for the pipeline)
        self.segments = 0
        self.spilled = 0  # of those, batches that went to the file
        self._held: list[tuple[str, list[Segment]]] = []
        self._held_bytes = 0
        self._file: BinaryIO | None = None
        self._target: Publish | None = None

    @property
    def attached(self) -> bool:
        return self._target is not None

    @property
    def full(self) -> bool:
        """The memory is used up: what comes next goes to the file."""
        return self._file is not None or self._held_bytes >= self.memory_bytes

    def publish(self, flow: str, segments: list[Segment]) -> None:
        if self._target is not None:
            self._target(flow, segments)
            return
        self.batches += 1
        self.segments += len(segments)
        size = sum(len(s.payload) for s in segments) + _PER_SEGMENT * len(segments)
        if self._file is None and self._held_bytes + size <= self.memory_bytes:
            self._held.append((flow, segments))
            self._held_bytes += size
            return
        self._spill(flow, segments)  # once spilling, always: the order stays the file's

    def _spill(self, flow: str, segments: list[Segment]) -> None:
        if self._file is None:
            self._file = tempfile.TemporaryFile(prefix="wiretide-spool-", dir=self.spill_dir)
        from schemas.serde import encode_segment_batch  # only a long start spills: load it then

        name = flow.encode()
        blob = encode_segment_batch(flow, segments)
        self._file.write(_FRAME.pack(len(name), len(blob)) + name + blob)
        self.spilled += 1

    def attach(self, publish: Publish) -> None:
        """Hand every held batch to `publish`, oldest first; then pass batches straight on."""
        for flow, segments in self._held:
            publish(flow, segments)
        self._held, self._held_bytes = [], 0
        if self._file is not None:
            for flow, segments in self._read_spilled(self._file):
                publish(flow, segments)
            self._file.close()
            self._file = None
        self._target = publish

    @staticmethod
    def _read_spilled(file: BinaryIO) -> Iterator[tuple[str, list[Segment]]]:
        from schemas.serde import decode_segment_batch

        file.flush()
        file.seek(0)
        while head := file.read(_FRAME.size):
            name_len, blob_len = _FRAME.unpack(head)
            flow = file.read(name_len).decode()
            yield flow, decode_segment_batch(file.read(blob_len))

    def close(self) -> None:
        """Drop what is held (the pipeline never came)."""
        self._held = []
        if self._file is not None:
            self._file.close()
            self._file = None
