"""The live loop over a real AF_PACKET capture (root): what it publishes, in what order,
and that a capture's last packets are published when it finishes."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable

import pytest

from producers.afpacket import AfPacketCapture
from producers.live import LiveLoop
from schemas.records import Segment
from schemas.segment_wire import SegmentColumns, decode_segments, encode_columns

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="live capture needs root")

PORTS = iter(range(21760, 21780))  # this module's share of 21700-21799


def send(port: int, n: int) -> list[bytes]:
    """`n` datagrams to 127.0.0.1:`port` from one socket (one flow); their payloads."""
    payloads = [b"live-%05d" % i + b"." * (i % 200) for i in range(n)]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for p in payloads:
            s.sendto(p, ("127.0.0.1", port))
    return payloads


def run_until(loop: LiveLoop, done: Callable[[], bool], guard_s: float = 30) -> None:
    """Step the loop until `done` (a guard against hanging, not a speed check: a busy
    machine may hand loopback packets to the taps late), then finish it."""
    deadline = time.monotonic() + guard_s
    while not done() and time.monotonic() < deadline:
        loop.step(0.05)
    loop.finish(settle_s=0.1)


def test_columns_are_published_once_each_in_order() -> None:
    """With `publish_columns`, the capture's batches go out as columns: every datagram
    once, in the order sent, and none through the segment path."""
    port = next(PORTS)
    columns: list[SegmentColumns] = []
    segments: list[tuple[str, list[Segment]]] = []
    cap = AfPacketCapture(["lo"], ports=[port])
    loop = LiveLoop([cap], lambda f, s: segments.append((f, s)), publish_columns=columns.append)
    sent = send(port, 3000)
    run_until(loop, lambda: sum(c.count for c in columns) >= len(sent))
    got = [seg for c in columns for seg in decode_segments(encode_columns(c))]
    assert [g.payload for g in got] == sent
    assert not segments
    assert loop.segments == len(sent)
    stats = loop.stats()
    assert stats["packets"] == stats["segments"] == len(sent)
    assert stats["kernel_drops"] == 0


def test_without_publish_columns_batches_go_out_as_segments() -> None:
    """A caller that only takes segment lists gets the same datagrams as `Segment`s,
    batched per flow under the flow's id."""
    port = next(PORTS)
    published: list[tuple[str, list[Segment]]] = []
    loop = LiveLoop([AfPacketCapture(["lo"], ports=[port])], lambda f, s: published.append((f, s)))
    sent = send(port, 500)
    run_until(loop, lambda: sum(len(b) for _, b in published) >= len(sent))
    assert [s.payload for _, batch in published for s in batch] == sent
    (flow,) = {f for f, _ in published}
    assert flow.startswith("udp:") and f":{port}" in flow
    assert all(isinstance(s, Segment) and s.source == "afpacket" for _, b in published for s in b)
