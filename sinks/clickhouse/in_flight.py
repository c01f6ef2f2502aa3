"""Which batches a sink may be storing a second time, so the writer skips the calls
already stored (writer.py, invariant 5) and the views count each call once.

A writer that crashes between its insert and its Kafka commit leaves calls stored
beyond the group's committed offsets; whoever owns those partitions next reads them
again. So before each insert the sink commits, at the batch's first offset of each
partition (where it would resume anyway), how far the batch goes, in the commit's
metadata; the commit after the insert clears it. A new owner reads the metadata when
the partitions are assigned: its batches that reach into that span are replays.

    flight = InFlight()
    flight.took(partition, offset)        # each message of the batch
    flight.mark(consumer, topic)          # before the insert
    flight.replay()                       # write the batch with replay=...?
    flight.stored()                       # after the commit
    flight.assigned(consumer, partitions) # on assignment: what a crashed owner left
"""

from __future__ import annotations

from confluent_kafka import KafkaException, TopicPartition

_PREFIX = "wiretide-sink stored-through "


class InFlight:
    def __init__(self) -> None:
        self._span: dict[int, list[int]] = {}  # partition -> [first, last] offset pending
        self._through: dict[int, int] = {}  # partition -> last offset maybe stored already
        self.maybe_stored = False  # this writer's own try may have stored part of the batch

    def took(self, partition: int, offset: int) -> None:
        span = self._span.setdefault(partition, [offset, offset])
        span[1] = max(span[1], offset)

    def replay(self) -> bool:
        return self.maybe_stored or any(
            first <= self._through.get(partition, -1)
            for partition, (first, _) in self._span.items()
        )

    def mark(self, consumer, topic: str) -> None:  # noqa: ANN001
        """Commit how far the batch goes before storing it. If Kafka cannot take it now,
        the batch is stored all the same (as before this marker existed: a crash before
        the next commit would count it twice)."""
        marks = [
            TopicPartition(topic, partition, first, metadata=f"{_PREFIX}{last}")
            for partition, (first, last) in self._span.items()
        ]
        if marks:
            try:
                consumer.commit(offsets=marks, asynchronous=False)
            except KafkaException:
                pass

    def stored(self) -> None:
        """The batch is stored and committed: past those spans nothing is a replay."""
        for partition, (_, last) in self._span.items():
            if self._through.get(partition, -1) <= last:
                self._through.pop(partition, None)
        self.dropped()

    def dropped(self) -> None:
        """The batch is forgotten (a rebalance): its next owner reads the marker."""
        self._span.clear()
        self.maybe_stored = False

    def assigned(self, consumer, partitions: list) -> None:  # noqa: ANN001
        """Read what a previous owner marked and did not commit past. If the offsets
        cannot be read, the next batch is taken for a replay."""
        try:
            committed = consumer.committed(partitions, timeout=10.0)
        except KafkaException:
            self.maybe_stored = True
            return
        for tp in committed:
            through = parse(tp.metadata)
            if through is not None and tp.offset <= through:
                self._through[tp.partition] = through


def parse(metadata: str | None) -> int | None:
    if not metadata or not metadata.startswith(_PREFIX):
        return None
    try:
        return int(metadata[len(_PREFIX) :])
    except ValueError:
        return None
