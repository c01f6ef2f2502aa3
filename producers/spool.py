"""Hold a capture's batches while the pipeline starts, so capture need not wait for Kafka:
batches are kept in memory up to a bound, then spilled to a file, and handed to the real
publisher in the order they came once it is there. Nothing is dropped.

A batch comes as segments (`publish`), columns (`publish_columns`, a live capture's) or an
encoded message (`publish_message`, `producers.pcap.read_batches`'). Columns are held as
the message the publisher would make of them, so memory is counted in message bytes."""

from __future__ import annotations

import struct
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

from schemas.records import Segment
from schemas.segment_wire import SegmentColumns, SegmentMessage, encode_columns

Publish = Callable[[str, list[Segment]], None]
_Held = SegmentMessage | tuple[str, list[Segment]]


class Publisher(Protocol):
    """What the spool hands its batches to (producers.publisher.SegmentPublisher)."""

    def publish(self, flow: str, segments: list[Segment]) -> None: ...
    def publish_columns(self, batch: SegmentColumns) -> None: ...
    def publish_message(self, message: SegmentMessage) -> None: ...


_FRAME = struct.Struct("<BIII")  # kind, flow length, segment count, blob length
_SEGMENTS, _MESSAGE = 0, 1  # kinds: a segment list (blob: SegmentBatch), a message (its value)
_PER_SEGMENT = 300  # what a Segment takes in memory besides its payload (measured ~264 B + bytes)


class SegmentSpool:
    """`publish`, `publish_columns`, `publish_message` like a publisher's. Until
    `attach(publisher)` the batches are kept (`memory_bytes` in memory, the rest in an
    unlinked file under `spill_dir`); attach hands them over in order, and every later
    batch goes straight through."""

    def __init__(self, memory_bytes: int = 32 << 20, spill_dir: Path | None = None) -> None:
        self.memory_bytes = memory_bytes
        self.spill_dir = spill_dir
        self.batches = 0  # held since the start (what waited for the pipeline)
        self.segments = 0
        self.spilled = 0  # of those, batches that went to the file
        self._held: list[_Held] = []
        self._held_bytes = 0
        self._file: BinaryIO | None = None
        self._target: Publisher | None = None

    @property
    def attached(self) -> bool:
        return self._target is not None

    @property
    def full(self) -> bool:
        """The memory is used up: what comes next goes to the file."""
        return self._file is not None or self._held_bytes >= self.memory_bytes

    def publish(self, flow: str, segments: list[Segment]) -> None:
        if self._target is not None:
            self._target.publish(flow, segments)
            return
        size = sum(len(s.payload) for s in segments) + _PER_SEGMENT * len(segments)
        self._hold((flow, segments), len(segments), size)

    def publish_columns(self, batch: SegmentColumns) -> None:
        if self._target is not None:
            self._target.publish_columns(batch)
            return
        self.publish_message(SegmentMessage(batch.flow_id, batch.count, encode_columns(batch)))

    def publish_message(self, message: SegmentMessage) -> None:
        if self._target is not None:
            self._target.publish_message(message)
            return
        self._hold(message, message.count, len(message.value))

    def _hold(self, item: _Held, count: int, size: int) -> None:
        self.batches += 1
        self.segments += count
        if self._file is None and self._held_bytes + size <= self.memory_bytes:
            self._held.append(item)
            self._held_bytes += size
            return
        self._spill(item)  # once spilling, always: the order stays the file's

    def _spill(self, item: _Held) -> None:
        if self._file is None:
            self._file = tempfile.TemporaryFile(prefix="wiretide-spool-", dir=self.spill_dir)
        if isinstance(item, SegmentMessage):
            kind, flow, count, blob = _MESSAGE, item.flow_id, item.count, item.value
        else:
            from schemas.serde import encode_segment_batch  # only a long start spills these

            flow, segments = item
            kind, count, blob = _SEGMENTS, len(segments), encode_segment_batch(flow, segments)
        name = flow.encode()
        self._file.write(_FRAME.pack(kind, len(name), count, len(blob)) + name + blob)
        self.spilled += 1

    def attach(self, publisher: Publisher) -> None:
        """Hand every held batch to `publisher`, oldest first; then pass batches straight on."""
        for item in self._held:
            _hand(publisher, item)
        self._held, self._held_bytes = [], 0
        if self._file is not None:
            for item in self._read_spilled(self._file):
                _hand(publisher, item)
            self._file.close()
            self._file = None
        self._target = publisher

    @staticmethod
    def _read_spilled(file: BinaryIO) -> Iterator[_Held]:
        from schemas.serde import decode_segment_batch

        file.flush()
        file.seek(0)
        while head := file.read(_FRAME.size):
            kind, name_len, count, blob_len = _FRAME.unpack(head)
            flow = file.read(name_len).decode()
            blob = file.read(blob_len)
            if kind == _MESSAGE:
                yield SegmentMessage(flow, count, blob)
            else:
                yield flow, decode_segment_batch(blob)

    def close(self) -> None:
        """Drop what is held (the pipeline never came)."""
        self._held = []
        if self._file is not None:
            self._file.close()
            self._file = None


def _hand(publisher: Publisher, item: _Held) -> None:
    if isinstance(item, SegmentMessage):
        publisher.publish_message(item)
    else:
        publisher.publish(*item)
