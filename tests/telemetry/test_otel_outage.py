"""The OTLP exporter holds its partitions while the collector is away, against a real
broker and a real OTLP/HTTP receiver: a rebalance during the outage (a member joining and
leaving the group) drops what it held, and once the collector is back every call still
gets there. Before the hold was shared with the sink (schemas/runtime/outage.py), the
exporter stayed paused for good after such a rebalance and exported nothing more."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from confluent_kafka import Consumer, Producer
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from schemas.config import Settings
from schemas.runtime.topics import ensure_topics
from schemas.serde import encode_call_batch
from tests.conftest import http_call
from wiretide.broker import free_port_pair
from wiretide.otel.consumer import GROUP, CallExporter
from wiretide.otel.endpoint import parse_endpoint
from wiretide.otel.sdk import OtlpOut

T0 = 1_700_000_000_000_000_000


class Collector:
    """An OTLP/HTTP traces receiver on `port`: the span ids it was sent."""

    def __init__(self, port: int) -> None:
        self.span_ids: set[bytes] = set()
        received = self.span_ids

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = ExportTraceServiceRequest.FromString(body)
                for resource in request.resource_spans:
                    for scope in resource.scope_spans:
                        received.update(span.span_id for span in scope.spans)
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _wait_for(ok, what: str, within: float = 120.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + within
    while not ok():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


@pytest.fixture
def settings(kafka: str) -> Settings:
    """This test's own calls topic (two partitions) with three calls on each."""
    settings = Settings(prefix=f"t{uuid.uuid4().hex[:8]}-", kafka=kafka)
    ensure_topics(settings, partitions=2, say=lambda line: None)
    producer = Producer({"bootstrap.servers": kafka, "acks": "all"})
    for partition in (0, 1):
        calls = [http_call(f"c{partition}-{i}", T0 + i, src_port=40000 + i) for i in range(3)]
        value = encode_call_batch(f"flow-{partition}", calls)
        producer.produce(settings.calls_topic, value=value, partition=partition)
    assert producer.flush(30) == 0
    return settings


@pytest.fixture
def collector_port() -> Iterator[int]:
    yield free_port_pair()


def test_a_rebalance_while_the_collector_is_away_does_not_hold_the_exporter(
    settings: Settings, collector_port: int
) -> None:
    url = f"http://127.0.0.1:{collector_port}/v1/traces"
    out = OtlpOut(parse_endpoint(url, "http"), timeout_s=1.0)
    said: list[str] = []
    exporter = CallExporter(settings, out, max_wait_s=0.5, say=said.append)
    stop = threading.Event()
    runner = threading.Thread(target=exporter.run, args=(stop.is_set,), daemon=True)
    collector = None
    try:
        runner.start()
        _wait_for(lambda: any("waiting for the collector" in line for line in said),
                  "the exporter to hold its batch")  # fmt: skip
        # Another member joins (the exporter gives up a partition and drops what it
        # held), then leaves (the exporter takes both partitions again).
        other = Consumer(
            {
                "bootstrap.servers": settings.kafka,
                "group.id": settings.prefix + GROUP,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
            }
        )
        other.subscribe([settings.calls_topic])
        deadline = time.monotonic() + 120
        while not other.assignment():
            assert time.monotonic() < deadline, "the second member got no partition"
            other.poll(0.5)
        other.close()
        collector = Collector(collector_port)
        _wait_for(lambda: len(collector.span_ids) == 12, "every call's two spans")
    finally:
        stop.set()
        runner.join(60)
        out.close()
        if collector is not None:
            collector.stop()
    assert not runner.is_alive()
    assert sum("waiting for the collector" in line for line in said) == 1, said
