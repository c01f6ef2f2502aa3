"""Which partition of the segments topic a flow's messages go to (sans-IO).

A worker owns whole partitions, and the reassembler needs both directions of a flow in one
place for the flow's whole life, so a flow never changes partition while it is known. The
stable choice is Kafka's own (CRC32 of the key, modulo the partitions), but with few
connections it leaves workers idle: 8 keep-alive flows hashed over 4 partitions gave one of
2 workers 62% and 76% of the calls on two such captures. So a flow seen opening (its first
message starts with a SYN) goes to the partition with the least recent load instead, and is
remembered there.

A flow first seen mid-stream keeps the stable hash: that is what the agent before a restart
(or any other publisher) chose for it unless it saw it open, so a restart moves only flows
this agent placed itself. A moved flow is safe, only not whole: the old partition's worker
sees the flow go quiet and closes it at its idle timeout (its checkpoint moves on), the new
one starts it mid-stream as after any capture gap; a restart loses the packets of that gap
anyway, and no call is stored twice.
"""

from __future__ import annotations

import zlib
from collections import OrderedDict
from collections.abc import Callable

# Loads are halved after this many bytes in all, so placement follows the recent load
# (a partition that carried a big flow an hour ago is not avoided for the next hour).
DECAY_BYTES = 64 << 20
# Flows remembered (~10 MB at most); past that the least recently published one is
# forgotten (a flow quiet for 64k newer flows is, in all likelihood, closed; if not, it
# moves, as on a restart).
MAX_FLOWS = 1 << 16


def hashed_partition(key: bytes, partitions: int) -> int:
    """librdkafka's default partitioner for a non-empty key (consistent_random: CRC32)."""
    return zlib.crc32(key) % partitions


class FlowPlacement:
    """Partition per flow key: least loaded for a flow seen opening, else the stable hash;
    then the same partition for as long as the flow is remembered."""

    def __init__(
        self, partitions: int, max_flows: int = MAX_FLOWS, decay_bytes: int = DECAY_BYTES
    ) -> None:
        if partitions < 1:
            raise ValueError(f"partitions must be at least 1, not {partitions}")
        self.partitions = partitions
        self.load = [0] * partitions  # bytes published per partition, decayed
        self.flows: OrderedDict[bytes, int] = OrderedDict()
        self.placed = 0  # flows placed by load (the rest were hashed)
        self._max_flows, self._decay_bytes = max_flows, decay_bytes
        self._since_decay = 0

    def partition(self, key: bytes, size: int, opens: Callable[[], bool]) -> int:
        """The partition of a message of `size` bytes of flow `key`. `opens()`: whether the
        message starts the flow (a SYN first); called only for a flow not known yet."""
        flows = self.flows
        p = flows.get(key)
        if p is None:
            opened = opens()
            p = self._least_loaded(key) if opened else hashed_partition(key, self.partitions)
            self.placed += opened
            flows[key] = p
            if len(flows) > self._max_flows:
                flows.popitem(last=False)
        else:
            flows.move_to_end(key)
        self._count(p, size)
        return p

    def _least_loaded(self, key: bytes) -> int:
        load = self.load
        low = min(load)
        home = hashed_partition(key, self.partitions)
        return home if load[home] == low else load.index(low)

    def _count(self, p: int, size: int) -> None:
        self.load[p] += size
        self._since_decay += size
        if self._since_decay >= self._decay_bytes:
            self._since_decay = 0
            self.load = [n >> 1 for n in self.load]
