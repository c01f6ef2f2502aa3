"""Which dissector reads a flow: port hint first, then the best probe on the first bytes."""

from __future__ import annotations

from collections.abc import Sequence

from streams.dissect.base import DissectorFactory
from streams.reassembly.events import Flow

MIN_PROBE_SCORE = 0.5


def transports(factory: DissectorFactory) -> frozenset[str]:
    return getattr(factory, "transports", frozenset({"tcp"}))


class Registry:
    def __init__(self, factories: Sequence[DissectorFactory]) -> None:
        self.factories = list(factories)
        self._by_transport: dict[str, list[DissectorFactory]] = {}
        for factory in self.factories:
            for transport in transports(factory):
                self._by_transport.setdefault(transport, []).append(factory)

    def detect(self, flow: Flow, first_bytes: bytes) -> DissectorFactory | None:
        """Pick a dissector for a flow from its first bytes (either direction)."""
        transport = flow.flow_id.partition(":")[0]
        if transport == "tls":  # plaintext of a TCP connection
            transport = "tcp"
        candidates = self._by_transport.get(transport, ())
        hinted = [f for f in candidates if flow.server_port in f.ports]
        for factory in hinted:
            if factory.probe(first_bytes) >= MIN_PROBE_SCORE:
                return factory
        best, score = None, MIN_PROBE_SCORE
        for factory in candidates:
            s = factory.probe(first_bytes)
            if s >= score:
                best, score = factory, s
        return best


def default_registry() -> Registry:
    """Every dissector Wiretide ships, in the order ties are broken."""
    from streams.dissect.amqp import AMQP
    from streams.dissect.dns import DNS
    from streams.dissect.http import HTTP1
    from streams.dissect.http2 import HTTP2
    from streams.dissect.kafka import KAFKA
    from streams.dissect.mongodb import MONGODB
    from streams.dissect.mysql import MYSQL
    from streams.dissect.postgresql import POSTGRESQL
    from streams.dissect.redis import REDIS
    from streams.dissect.websocket import WEBSOCKET

    return Registry([HTTP1, DNS, POSTGRESQL, HTTP2, KAFKA, REDIS, AMQP, WEBSOCKET, MYSQL, MONGODB])
