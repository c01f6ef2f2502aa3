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
    def __init__(self, settings: Settings, topic: str | None = None) -> None:
        self.topic = topic or settings.endpoints_topic
        self._producer = Producer(settings.kafka_client(acks="all", log_level=3))
        self._published: dict[str, Endpoint] = {}

    def sync(self, endpoints: Iterable[Endpoint]) -> int:
        """Publish what changed since the last sync; returns the messages sent."""
        now = time.time_ns()
        wanted = {e.ip: dataclasses.replace(e, updated_ns=now) for e in endpoints}
        sent = 0
        for ip, ep in wanted.items():
            old = self._published.get(ip)
            if old is None or _key_fields(old) != _key_fields(ep):
                self._producer.produce(self.topic, key=ip.encode(),
                                       value=encode_endpoint(ep))  # fmt: skip
                sent += 1
        for ip in set(self._published) - set(wanted):
            self._producer.produce(self.topic, key=ip.encode(), value=None)
            sent += 1
        self._published = wanted
        self._producer.flush(30)
        return sent


def _key_fields(ep: Endpoint) -> tuple:
    return (ep.kind, ep.name, ep.namespace, ep.service, ep.node, ep.labels)
