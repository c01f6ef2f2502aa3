"""Endpoints onto the compacted endpoints topic: one message per IP, a tombstone when an
IP is gone."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable

from confluent_kafka import Producer

from schemas.config import Settings
from schemas.records import Endpoint
from schemas.serde import encode_endpoint


class EndpointPublisher:
    """`linger_s`: an IP whose pod is gone keeps its identity that long before its
    tombstone, so the calls it made just before (still in the workers' queues) are named;
    a new pod on the same IP replaces it at once."""

    def __init__(
        self, settings: Settings, topic: str | None = None, linger_s: float = 60.0
    ) -> None:
        self.topic = topic or settings.endpoints_topic
        self.linger_s = linger_s
        self._producer = Producer(settings.kafka_client(acks="all", log_level=3))
        self._published: dict[str, Endpoint] = {}
        self._gone: dict[str, float] = {}  # ip -> when its tombstone is due (monotonic)

    def sync(self, endpoints: Iterable[Endpoint]) -> int:
        """Publish what changed since the last sync; returns the messages sent."""
        now = time.time_ns()
        wanted = {e.ip: dataclasses.replace(e, updated_ns=now) for e in endpoints}
        sent = 0
        for ip, ep in wanted.items():
            self._gone.pop(ip, None)
            old = self._published.get(ip)
            if old is None or _key_fields(old) != _key_fields(ep):
                self._producer.produce(self.topic, key=ip.encode(),
                                       value=encode_endpoint(ep))  # fmt: skip
                sent += 1
        clock = time.monotonic()
        kept = {}
        for ip in set(self._published) - set(wanted):
            due = self._gone.setdefault(ip, clock + self.linger_s)
            if due > clock:
                kept[ip] = self._published[ip]
                continue
            self._producer.produce(self.topic, key=ip.encode(), value=None)
            del self._gone[ip]
            sent += 1
        self._published = {**kept, **wanted}
        self._producer.flush(30)
        return sent


def _key_fields(ep: Endpoint) -> tuple:
    return (ep.kind, ep.name, ep.namespace, ep.service, ep.node, ep.labels)
