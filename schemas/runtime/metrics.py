"""The pipeline's own health as Prometheus metrics: one registry per process (the
default), counters the agent, the stream workers and the writers move as they work, and
a listener that serves them (`--metrics-port`, off by default).

What each process counts (names end with their unit, `_total` for counters):

* agent: packets seen and dropped by the kernel per node, segments published;
* worker: calls emitted, calls with gaps, requests without responses and responses
  without requests, dissector failures per protocol, records dead-lettered (`<topic>.dlq`);
* writer: rows stored, insert time, records dead-lettered.

The RED metrics of the observed traffic are the hub's (wiretide/hub/metrics.py): it
reads them from storage, where every call is counted once, whichever process stored it.
Counting is a few dictionary updates per batch: calls are tallied per protocol in plain
ints, and the counters move once per protocol and batch.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterable, Mapping

from prometheus_client import Counter, Histogram, disable_created_metrics, start_http_server

from schemas.records import ApiCall

disable_created_metrics()  # `_created` series per label set: noise on every dashboard

PACKETS = Counter("wiretide_capture_packets", "Packets the capture read from the kernel", ["node"])
KERNEL_PACKETS = Counter(
    "wiretide_capture_kernel_packets",
    "Packets the kernel offered the capture sockets (its own count, drops included)",
    ["node"],
)
KERNEL_DROPS = Counter(
    "wiretide_capture_kernel_drops",
    "Packets the kernel dropped because the capture ring was full",
    ["node"],
)
SEGMENTS_PUBLISHED = Counter(
    "wiretide_segments_published",
    "TCP segments and UDP datagrams the capture handed to Kafka",
    ["node"],
)
CALLS_EMITTED = Counter(
    "wiretide_worker_calls", "Calls the stream workers emitted (a replay emits again)", ["protocol"]
)
CALLS_WITH_GAP = Counter(
    "wiretide_worker_calls_with_gap",
    "Calls whose flow lost bytes (capture gap): what was missing could not be dissected",
    ["protocol"],
)
REQUESTS_UNANSWERED = Counter(
    "wiretide_worker_requests_without_response", "Requests that got no response", ["protocol"]
)
RESPONSES_UNMATCHED = Counter(
    "wiretide_worker_responses_without_request",
    "Responses whose request was not seen (capture started mid-flow, or bytes lost)",
    ["protocol"],
)
DISSECT_FAILURES = Counter(
    "wiretide_worker_dissect_failures",
    "Messages a dissector could not read (bad bytes: it resynced; the flow's rest goes on)",
    ["protocol"],
)
DEAD_LETTERS = Counter(
    "wiretide_dead_letters",
    "Records that could not be decoded, encoded or stored, sent to <topic>.dlq",
    ["stage", "topic"],
)
SINK_ROWS = Counter("wiretide_sink_rows", "Calls the writer stored (a replay stores again)")
SINK_INSERT_SECONDS = Histogram(
    "wiretide_sink_insert_duration_seconds",
    "Time of one insert of a batch of calls into ClickHouse",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
SINK_BATCH_ROWS = Histogram(
    "wiretide_sink_insert_rows",
    "Calls per insert",
    buckets=(1, 10, 100, 1000, 10_000, 100_000),
)

_FLAGGED = (("gap", CALLS_WITH_GAP), ("no_response", REQUESTS_UNANSWERED),
            ("no_request", RESPONSES_UNMATCHED))  # fmt: skip


def count_calls(calls: Iterable[ApiCall]) -> None:
    """A worker's batch of emitted calls: per protocol, and per coverage flag."""
    emitted: Tally[str] = Tally()
    flagged: dict[str, Tally[str]] = {}
    for call in calls:
        emitted[call.protocol] += 1
        if call.flags:
            for flag in call.flags:
                flagged.setdefault(flag, Tally())[call.protocol] += 1
    for protocol, n in emitted.items():
        CALLS_EMITTED.labels(protocol).inc(n)
    for flag, counter in _FLAGGED:
        for protocol, n in flagged.get(flag, {}).items():
            counter.labels(protocol).inc(n)


def count_failures(failures: Iterable) -> None:
    """A worker's batch of DissectFailed (streams/dissect/base.py), per protocol."""
    for protocol, n in Tally(f.protocol for f in failures).items():
        DISSECT_FAILURES.labels(protocol).inc(n)


class CaptureCounters:
    """Moves the agent's counters to a capture's cumulative stats (`LiveLoop.stats()`),
    each time they are read: the capture keeps its own totals, this adds what is new."""

    def __init__(self, node: str) -> None:
        self.node = node
        self._seen: dict[str, int] = {}
        self._counters = {"packets": PACKETS, "kernel_packets": KERNEL_PACKETS,
                          "kernel_drops": KERNEL_DROPS, "segments": SEGMENTS_PUBLISHED}  # fmt: skip

    def update(self, stats: Mapping[str, int]) -> None:
        for name, counter in self._counters.items():
            value = stats.get(name, 0)
            delta = value - self._seen.get(name, 0)
            if delta > 0:
                counter.labels(self.node).inc(delta)
                self._seen[name] = value


def serve(port: int, addr: str = "0.0.0.0") -> str | None:
    """Serve this process's metrics on http://addr:port/metrics (a thread). None, or why
    not in one line (a port taken: the process goes on without its listener)."""
    try:
        start_http_server(port, addr)
    except OSError as ex:
        return f"metrics: cannot listen on {addr}:{port}: {ex.strerror or ex}"
    return None
