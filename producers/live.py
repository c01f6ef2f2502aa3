"""Live capture sources behind one interface, and the loop that feeds their segments to
the batcher and publisher.

A source is anything with `poll(timeout_s) -> list[Segment]`, `stats() -> dict` and
`close()`: the AF_PACKET capture (producers.afpacket) and, when installed, the eBPF TLS
capture (producers.tls.TlsCapture, which also has `start()`). Kubernetes targeting
(pods by regex and namespace) will narrow the same sources down: it turns pods into
interfaces/namespaces for AF_PACKET and pids for TLS.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from producers.afpacket import AfPacketCapture, LiveCaptureError, RingSpec
from producers.batcher import FlowBatcher
from schemas.errors import WiretideError
from schemas.records import Segment

Publish = Callable[[str, list[Segment]], None]


class SegmentSource(Protocol):
    def poll(self, timeout_s: float) -> list[Segment]: ...
    def stats(self) -> dict[str, int]: ...
    def close(self) -> None: ...


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
) -> list[SegmentSource]:
    """Open every source now, so a missing privilege or interface fails before anything
    else starts."""
    sources: list[SegmentSource] = [
        AfPacketCapture(interfaces, ports=ports, hosts=hosts, netns=netns, node=node, spec=spec)
    ]
    if tls:
        try:
            sources.append(open_tls_source(tls_pids, node=node))
        except BaseException:
            sources[0].close()
            raise
    return sources


class LiveLoop:
    """Moves segments from the sources into flow batches and publishes them: full batches
    at once, the rest every `flush_every_s` so a quiet flow is not held back."""

    def __init__(
        self,
        sources: list[SegmentSource],
        publish: Publish,
        batcher: FlowBatcher | None = None,
        flush_every_s: float = 0.2,
    ) -> None:
        self.sources = sources
        self.publish = publish
        self.batcher = batcher or FlowBatcher()
        self.flush_every_s = flush_every_s
        self.segments = 0
        self.final_stats: dict[str, int] | None = None
        self._last_flush = time.monotonic()

    def step(self, timeout_s: float) -> int:
        """One round: wait up to `timeout_s` on the first source, take what the others
        have; returns the number of segments taken."""
        first, *others = self.sources
        segments = first.poll(timeout_s)
        for source in others:
            segments += source.poll(0)
        add, publish = self.batcher.add, self.publish
        for seg in segments:
            full = add(seg)
            if full is not None:
                publish(*full)
        self.segments += len(segments)
        now = time.monotonic()
        if now - self._last_flush >= self.flush_every_s:
            self._last_flush = now
            self.flush()
        return len(segments)

    def flush(self) -> None:
        for fid, batch in self.batcher.drain():
            self.publish(fid, batch)

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

    def finish(self, settle_s: float = 0.2) -> None:
        """After capture stops: take the packets still in the rings (a block not yet
        full is handed over after the ring's retire timeout), close the sources and
        publish every open batch."""
        deadline = time.monotonic() + settle_s
        while time.monotonic() < deadline:
            self.step(0.02)
        self.final_stats = self.stats()
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
