"""Live capture sources behind one interface, and the loop that feeds their segments to
the batcher and publisher.

A source is anything with `poll(timeout_s) -> list[Segment]`, `stats() -> dict` and
`close()`: the AF_PACKET capture (producers.afpacket) and, when installed, the eBPF TLS
capture (producers.tls.TlsCapture, which also has `start()`). A source that can also
`gather` its packets and decode them later as flow `batches` (the AF_PACKET capture) is
read that way: a run of ring blocks at a time, no Python object per packet. Kubernetes targeting
(pods by regex and namespace) will narrow the same sources down: it turns pods into
interfaces/namespaces for AF_PACKET and pids for TLS.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from producers.afpacket import AfPacketCapture, LiveCaptureError, RingSpec
from producers.batcher import FlowBatcher
from schemas.coverage import SOURCE_AFPACKET, SOURCE_TLS, NodeCoverage
from schemas.errors import WiretideError
from schemas.records import Segment
from schemas.segment_wire import SegmentColumns, segments_of

Publish = Callable[[str, list[Segment]], None]
PublishColumns = Callable[[SegmentColumns], None]


class SegmentSource(Protocol):
    def poll(self, timeout_s: float) -> list[Segment]: ...
    def stats(self) -> dict[str, int]: ...
    def close(self) -> None: ...


class BatchSource(SegmentSource, Protocol):
    @property
    def chunk_ready(self) -> bool: ...
    def gather(self, timeout_s: float) -> int: ...
    def batches(self) -> list[SegmentColumns]: ...


def open_tls_source(pids: list[int] | None = None, node: str = "") -> SegmentSource:
    """The eBPF TLS capture, started; a one-line error when it is not installed or
    cannot start here."""
    try:
        from producers.tls import TlsCapture  # type: ignore[import-not-found]
    except ImportError as exc:
        raise LiveCaptureError(
            f"--tls: TLS capture is not available in this installation ({exc}); "
            "capture without --tls"
        ) from None
    tls = TlsCapture(pids, node=node)
    try:
        tls.start()
    except WiretideError:
        raise
    except Exception as exc:  # BCC and the kernel speak many dialects of failure
        raise LiveCaptureError(f"--tls: the TLS capture did not start ({exc})") from None
    return tls


def open_sources(
    interfaces: list[str] | None,
    *,
    ports: list[int],
    hosts: list[str],
    netns: str | None = None,
    tls: bool = False,
    tls_pids: list[int] | None = None,
    node: str = "",
    spec: RingSpec | None = None,
    tls_unavailable: Callable[[str], None] | None = None,
) -> list[SegmentSource]:
    """Open every source now, so a missing privilege or interface fails before anything
    else starts. With `tls_unavailable`, a TLS capture that cannot start here is told to
    it (one line: what is missing) and the capture goes on without TLS."""
    sources: list[SegmentSource] = [
        AfPacketCapture(interfaces, ports=ports, hosts=hosts, netns=netns, node=node, spec=spec)
    ]
    if tls:
        try:
            sources.append(open_tls_source(tls_pids, node=node))
        except WiretideError as exc:
            if tls_unavailable is None:
                sources[0].close()
                raise
            tls_unavailable(str(exc))
        except BaseException:
            sources[0].close()
            raise
    return sources


def node_coverage(
    sources: list[SegmentSource], node: str, *, tls: bool, tls_problem: str = ""
) -> NodeCoverage:
    """This agent's coverage facts now (schemas/coverage.py): its sources, the TLS state
    and the processes doing TLS, the kernel's packet and drop counts."""
    names, where, processes, packets, drops, tls_bytes = [], "", [], 0, 0, 0
    for source in sources:
        stats = source.stats()
        if isinstance(source, AfPacketCapture):
            names.append(SOURCE_AFPACKET)
            where = source.where
            packets += stats.get("kernel_packets", 0)
            drops += stats.get("kernel_drops", 0)
        elif hasattr(source, "processes"):
            names.append(SOURCE_TLS)
            processes += source.processes()  # type: ignore[attr-defined]
            tls_bytes += stats.get("bytes", 0)
    state = "off" if not tls else ("on" if SOURCE_TLS in names else "unavailable")
    return NodeCoverage(
        node,
        time.time_ns(),
        tuple(names),
        where,
        state,
        tls_problem if state == "unavailable" else "",
        packets,
        drops,
        tls_bytes,
        tuple(processes),
    )


def is_batch_source(source: SegmentSource) -> bool:
    return hasattr(source, "gather") and hasattr(source, "batches")


class LiveLoop:
    """Moves segments from the sources into flow batches and publishes them: full batches
    at once, the rest every `flush_every_s` so a quiet flow is not held back. A batch
    source's packets are decoded every `flush_every_s`, or once it has a chunk's worth,
    and published with `publish_columns` (by default as segments through `publish`)."""

    def __init__(
        self,
        sources: list[SegmentSource],
        publish: Publish,
        batcher: FlowBatcher | None = None,
        # a live call waits about half of this here (bench/bench_latency.py: 0.2 -> 0.1 s
        # took the agent stage at 1k calls/s from p50 0.13/p99 0.27 s to 0.07/0.16 s)
        flush_every_s: float = 0.1,
        publish_columns: PublishColumns | None = None,
    ) -> None:
        self.sources = sources
        self.publish = publish
        self.publish_columns = publish_columns or self._publish_as_segments
        self.batcher = batcher or FlowBatcher()
        self.flush_every_s = flush_every_s
        self.segments = 0
        self.final_stats: dict[str, int] | None = None
        self._last_flush = time.monotonic()

    def _publish_as_segments(self, columns: SegmentColumns) -> None:
        self.publish(columns.flow_id, segments_of(columns))

    def step(self, timeout_s: float) -> int:
        """One round: wait up to `timeout_s` on the first source, take what the others
        have; returns the number of packets or segments taken."""
        taken = 0
        for i, source in enumerate(self.sources):
            wait = timeout_s if i == 0 else 0
            if is_batch_source(source):
                taken += source.gather(wait)  # type: ignore[attr-defined]
            else:
                taken += self._add(source.poll(wait))
        now = time.monotonic()
        if now - self._last_flush >= self.flush_every_s:
            self._last_flush = now
            self.flush()
        else:
            ready = [s for s in self._batch_sources() if s.chunk_ready]
            if ready and len(self.sources) > 1:  # the plaintext before the ciphertext
                for fid, batch in self.batcher.drain():
                    self.publish(fid, batch)
            for source in ready:
                self._publish_batches(source)
        return taken

    def _batch_sources(self) -> list[BatchSource]:
        """Asked each time: sources may be added while the loop runs (meshed pods)."""
        return [s for s in self.sources if is_batch_source(s)]  # type: ignore[misc]

    def _add(self, segments: list[Segment]) -> int:
        add, publish = self.batcher.add, self.publish
        for seg in segments:
            full = add(seg)
            if full is not None:
                publish(*full)
        self.segments += len(segments)
        return len(segments)

    def _publish_batches(self, source: BatchSource) -> None:
        publish = self.publish_columns
        for columns in source.batches():
            publish(columns)
            self.segments += columns.count

    def flush(self) -> None:
        # TLS plaintext first: a worker that sees a connection's plaintext before its
        # ciphertext ends stores it once (streams/dissect/opaque.py), not also as `tcp`
        for fid, batch in self.batcher.drain():
            self.publish(fid, batch)
        for source in self._batch_sources():
            self._publish_batches(source)

    def run(
        self,
        should_stop: Callable[[], bool],
        on_status: Callable[[], None] | None = None,
        status_every_s: float = 1.0,
    ) -> None:
        last_status = time.monotonic()
        while not should_stop():
            self.step(0.1)
            if on_status is not None and time.monotonic() - last_status >= status_every_s:
                last_status = time.monotonic()
                on_status()

    def finish(self, settle_s: float = 0.2, before_close: Callable[[], None] | None = None) -> None:
        """After capture stops: take the packets still in the rings (a block not yet
        full is handed over after the ring's retire timeout), close the sources and
        publish every open batch. `before_close` reads what the open sources know."""
        deadline = time.monotonic() + settle_s
        while time.monotonic() < deadline:
            self.step(0.02)
        self.flush()  # decoded before the counters are read
        self.final_stats = self.stats()
        if before_close is not None:
            before_close()
        for source in self.sources:
            source.close()
        self.flush()

    def stats(self) -> dict[str, int]:
        """Counters of every source added up (kept from `finish` once they are closed)."""
        if self.final_stats is not None:
            return self.final_stats
        merged: dict[str, int] = {}
        for source in self.sources:
            for key, value in source.stats().items():
                if isinstance(value, int):
                    merged[key] = merged.get(key, 0) + value
        return merged
