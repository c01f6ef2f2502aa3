"""Which dissector reads a flow: port hint first, then the best probe on the first bytes."""

from __future__ import annotations

from collections.abc import Sequence

from streams.dissect.base import DissectorFactory
from streams.reassembly.events import Flow

MIN_PROBE_SCORE = 0.5


class Registry:
    def __init__(self, factories: Sequence[DissectorFactory]) -> None:
        self.factories = list(factories)

    def detect(self, flow: Flow, first_bytes: bytes) -> DissectorFactory | None:
        """Pick a dissector for a flow from its first bytes (either direction)."""
        hinted = [f for f in self.factories if flow.server_port in f.ports]
        for factory in hinted:
            if factory.probe(first_bytes) >= MIN_PROBE_SCORE:
                return factory
        best, score = None, MIN_PROBE_SCORE
        for factory in self.factories:
            s = factory.probe(first_bytes)
            if s >= score:
                best, score = factory, s
        return best


def default_registry() -> Registry:
    from streams.dissect.http import HTTP1

    return Registry([HTTP1])
