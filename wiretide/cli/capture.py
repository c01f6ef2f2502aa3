"""What `tap` and `agent` do: read a capture or capture live, publish the segments, and
(for `tap`) run the local pipeline that stores them.

Imported only when one of them runs: it loads producers/, streams' rules and Kafka.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from producers.afpacket import RingSpec
from producers.afpacket.capture import NO_HOST
from producers.live import LiveLoop, open_sources
from producers.pcap import ReadStats, read_batches
from producers.spool import SegmentSpool
from schemas.config import Settings
from schemas.errors import WiretideError
from schemas.runtime import health
from schemas.runtime.sink_status import SinkStatus
from schemas.segment_wire import SegmentMessage
from wiretide import local
from wiretide.broker import left_running_note
from wiretide.coverage import AgentCoverage, tls_line
from wiretide.local import (
    PipelineStart,
    Supervisor,
    connect,
    pipeline_ports,
    planned_bootstrap,
    ui_listen,
    wait_until_stored,
)
from wiretide.progress import Progress, StageLines

if TYPE_CHECKING:  # imported where used: Kafka's client and the Kubernetes one load slowly
    from producers.publisher import SegmentPublisher


def check_inputs(args: argparse.Namespace, settings: Settings) -> None:
    """Read the redaction policy and the validation rules now: a bad file fails in one
    line before anything starts, not inside a worker."""
    _policy(getattr(args, "redaction", None))
    _check_rules(getattr(args, "rules", None) or settings.rules)


def _policy(path: str | None) -> None:
    if not path:
        return
    from streams.redact import RedactionPolicy

    try:
        RedactionPolicy.from_yaml(path)
    except (OSError, ValueError) as exc:
        said = str(exc)  # names the file already, as a rule
        raise WiretideError(said if path in said else f"redaction file {path}: {said}") from None


def _check_rules(path: str | None) -> None:
    if not path:
        return
    from streams.rules import RulesError, load_rules

    try:
        load_rules(path)
    except RulesError as ex:
        more = f"; see all with: wiretide rules check {path}" if len(ex.problems) > 1 else ""
        raise WiretideError(f"rules file {ex}{more}") from None


def plan_pipeline(args: argparse.Namespace, settings: Settings, quiet: bool) -> PipelineStart:
    """Broker, topics, stream workers and the sink, decided now and brought up in the
    background (`.begin()`), so capture need not wait for them; what it waits for is said
    on stderr (unless `quiet`) as it changes."""
    settings, broker = planned_bootstrap(settings)
    data = settings.data
    # Every core by default; partitions enough that no worker idles.
    workers = args.workers or os.cpu_count() or 1
    partitions = local.partition_layout(workers, settings.partitions)
    print(f"tap: {workers} stream workers, {partitions} partitions", flush=True)
    extra = ["--clickhouse", args.clickhouse] if args.clickhouse else []
    listen = ui_listen(data, getattr(args, "ui_port", None), getattr(args, "no_ui", True))
    extra += ["--serve", listen] if listen else []
    if args.redaction:
        settings = settings.replace(redaction=os.path.abspath(args.redaction))
    if getattr(args, "rules", None):  # the workers validate, the hub shows them
        settings = settings.replace(rules=os.path.abspath(args.rules))
    SinkStatus.clear(data)
    names = {f"worker-{i + 1}": [] for i in range(workers)}
    roles = {"sink": extra, **names}
    say = StageLines(not quiet, "tap: waiting for ").say
    return PipelineStart(settings, broker, roles, partitions, workers, say=say)


def _say(line: str) -> None:
    """One line on stderr in one write: the pipeline's start says its own from a thread."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


class Handover:
    """A capture's batches go to a spool while the pipeline starts, then to Kafka through
    one publisher, oldest first. `spill`: past the spool's memory, spill to a file (live
    capture cannot wait); else wait for the pipeline there (a file can)."""

    def __init__(
        self,
        start: PipelineStart,
        spill: bool,
        quiet: bool,
        on_ready: Callable[[Supervisor], int | None] = lambda _: None,
    ) -> None:
        """`on_ready` runs once the pipeline is up (it announces the UI: its port)."""
        self.start, self.quiet, self.on_ready = start, quiet, on_ready
        self.ui_port: int | None = None
        self.spool = SegmentSpool(spill_dir=start.settings.data if spill else None)
        self.wait_when_full = not spill
        self.publish = self.spool.publish
        self.publish_columns = self.spool.publish_columns
        self.publish_message = self.spool.publish_message
        self.publisher: SegmentPublisher | None = None
        self.supervisor: Supervisor | None = None
        self.attached_at: float | None = None

    def poll(self) -> None:
        """Hand over when the pipeline is up (or, when the spool may not spill, full)."""
        if self.publisher is None and (
            self.start.ready or (self.wait_when_full and self.spool.full)
        ):
            self.attach()

    def attach(self) -> tuple[SegmentPublisher, Supervisor]:
        """Wait for the pipeline if need be, then hand the spool over."""
        if self.publisher is None or self.supervisor is None:
            from producers.publisher import SegmentPublisher

            self.supervisor = self.start.supervisor()
            # a tap is the only publisher of its flows: they may be placed by load
            self.publisher = SegmentPublisher(self.start.settings, balance=True)
            self.attached_at = time.monotonic()
            self.spool.attach(self.publisher)
            if not self.quiet:
                held = self.spool.segments
                _say(
                    f"tap: pipeline ready after {self.start.ready_after or 0:.1f}s; "
                    f"{held} segments captured meanwhile handed over"
                )
            self.ui_port = self.on_ready(self.supervisor)
        return self.publisher, self.supervisor

    def close(self) -> None:
        self.spool.close()
        self.start.cancel()


def store_all(
    publisher: SegmentPublisher, supervisor: Supervisor, progress: Progress, data: Path
) -> None:
    """Mark the end of the capture, then wait until every call is stored."""
    publisher.publish_end_of_capture()

    def on_progress(stage: str, lag: int) -> None:
        stored = SinkStatus.read(data).written
        progress.show(f"{stage:9s} {lag} messages left, {stored} calls stored")

    wait_until_stored(supervisor, on_progress)


def report_stored(supervisor: Supervisor, data: Path, flowing: float, span: str) -> None:
    """`flowing`: the seconds calls were moving, which `span` names (start-up and the
    processes' shutdown are not the calls' time: they would make a short capture slow)."""
    status = SinkStatus.read(data)
    stored, again = status.stored, status.stored_before or 0
    note = f"; {again} calls were already stored" if again else ""
    rate = stored / flowing if flowing > 0 else 0.0
    print(f"stored {stored} calls in {flowing:.2f}s ({rate:.0f} calls/s, {span}{note})")
    restarts = {r: n for r, n in supervisor.restarts.items() if n}
    if restarts:
        print("restarted after a crash: " + ", ".join(f"{r} x{n}" for r, n in restarts.items()))


def say_left_running(kafka_given: bool, settings: Settings) -> None:
    """A tap on the local broker leaves it up (the next tap starts at once, export reads
    its packets): say so, and how to stop it."""
    note = None if kafka_given else left_running_note(settings)
    if note:
        print(f"wiretide: {note}", file=sys.stderr, flush=True)


def announce_ui(args: argparse.Namespace, supervisor: Supervisor) -> int | None:
    if "--serve" not in supervisor.roles["sink"]:
        return None
    return local.announce_ui(supervisor, args.quiet)


def keep_ui(args: argparse.Namespace, settings: Settings, port: int | None) -> None:
    """With --keep-ui: serve the UI from this process, on the same port, until Ctrl-C."""
    if not args.keep_ui or port is None:
        return
    from sinks.clickhouse.connect import open_store
    from wiretide.hub.serve import ServedHub
    from wiretide.hub.store import HubStore

    store = HubStore(
        open_store(settings.store_dsn, ttl_days=None, cluster=settings.clickhouse_cluster)
    )
    try:
        kafka = settings.kafka
        hub = ServedHub.start(store, f"127.0.0.1:{port}", settings, lambda: kafka)
        print(f"UI: http://localhost:{hub.port} (Ctrl-C stops it)", file=sys.stderr, flush=True)
        hub.serve_until_stopped(settings.data)
    finally:
        store.close()


def open_capture(path: str) -> tuple[Iterator[SegmentMessage], ReadStats]:
    """The capture's messages, ready to publish, and the read's counts; the file is opened
    and checked now, before anything starts."""
    messages = read_batches(path, stats=(stats := ReadStats()))
    return messages, stats


def publish_capture(
    path: str,
    messages: Iterator[SegmentMessage],
    stats: ReadStats,
    publish: Callable[[SegmentMessage], None],
    progress: Progress,
    after_batch: Callable[[], None] = lambda: None,
) -> None:
    size = max(1, os.path.getsize(path))
    for message in messages:
        publish(message)
        after_batch()
        if progress.enabled:
            progress.show(
                f"reading  {Progress.bar(stats.bytes_read, size)} {stats.packets} packets"
            )


def tap_pcap(args: argparse.Namespace, settings: Settings) -> int:
    """Replay a capture file through the local pipeline and store every call."""
    check_inputs(args, settings)
    messages, stats = open_capture(args.pcap)
    kafka_given = bool(settings.kafka)
    start = plan_pipeline(args, settings, args.quiet).begin()
    settings = start.settings
    progress = Progress(False if args.quiet else None)
    handover = Handover(start, False, args.quiet, lambda sup: announce_ui(args, sup))
    try:
        if not args.quiet:
            _say(f"reading {args.pcap}")
        publish_capture(
            args.pcap, messages, stats, handover.publish_message, progress, handover.poll
        )
        publisher, supervisor = handover.attach()
        ui_port = handover.ui_port
        store_all(publisher, supervisor, progress, settings.data)
        flowing = time.monotonic() - (handover.attached_at or 0.0)
    finally:
        handover.close()
        progress.done()
    skipped = ", ".join(f"{k} {v}" for k, v in sorted(stats.skipped.items())) or "none"
    print(f"read {stats.packets} packets ({stats.segments} segments); skipped: {skipped}")
    span = "from the first segment published to the last call stored"
    report_stored(supervisor, settings.data, flowing, span)
    say_left_running(kafka_given, settings)
    keep_ui(args, settings, ui_port)
    return 0


def publish_pcap(args: argparse.Namespace, settings: Settings) -> int:
    """Publish a capture's segments to Kafka for the stream workers, then mark its end."""
    messages, stats = open_capture(args.pcap)
    kafka_given = bool(settings.kafka)
    settings = connect(settings)
    from producers.publisher import SegmentPublisher
    from schemas.runtime.topics import ensure_topics

    ensure_topics(settings)

    publisher = SegmentPublisher(settings)
    publish_capture(args.pcap, messages, stats, publisher.publish_message, Progress(False))
    publisher.publish_end_of_capture()
    print(f"published {stats.segments} segments of {stats.packets} packets to {settings.kafka}")
    say_left_running(kafka_given, settings)
    return 0


class _StopOnSignal:
    """SIGINT/SIGTERM ask the capture to stop and store what it has; a second one aborts."""

    def __init__(self) -> None:
        self.requested = False
        self._old = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        for sig in self._old:
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, frame: object) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def restore(self) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)


def _open_live(args: argparse.Namespace, settings: Settings, node: str):  # noqa: ANN202
    """(sources, cluster or None, coverage), opened first: no privilege, no such interface
    or a bad filter fails in one line before the broker and workers start. --tls that
    cannot run here says what is missing in one line, and capture goes on without it."""
    problems: list[str] = []

    def tls_unavailable(why: str) -> None:
        problems.append(why)
        _say(f"wiretide: --tls: {why}; capturing without TLS")

    cluster = None
    if args.pod_regex or args.namespace or args.all_namespaces:
        from wiretide.kube.aim import Cluster

        cluster = Cluster.open(args.pod_regex, args.namespace, args.all_namespaces, args.kubeconfig)
    sources = open_sources(
        args.interface,
        ports=args.port or [],
        # A targeted capture takes nothing until it knows its pods' IPs (else it would
        # catch its own calls to the Kubernetes API).
        hosts=[NO_HOST] if cluster is not None else args.host or [],
        netns=args.netns,
        tls=args.tls,
        # None: every process on this host
        tls_pids=cluster.local_pids(node) if cluster is not None and args.tls else None,
        node=node,
        spec=RingSpec.of_mib(args.buffer),
        tls_unavailable=tls_unavailable,
    )
    coverage = AgentCoverage(sources, node, bool(args.tls), problems[0] if problems else "")
    return sources, cluster, coverage


def capture_live(args: argparse.Namespace, settings: Settings, store: bool = True) -> int:
    """Capture until --for runs out or a signal; publish the segments, and (`store`) run
    the local pipeline that stores them, started beside the capture."""
    check_inputs(args, settings)
    kafka_given = bool(settings.kafka)
    settings = settings.replace(data=settings.writable_data())
    node = settings.node or os.uname().nodename
    sources, cluster, coverage = _open_live(args, settings, node)
    where = sources[0].where  # type: ignore[attr-defined]
    stop = _StopOnSignal()
    progress = Progress(False if not store or args.quiet else None)
    supervisor = targets = ui_port = handover = None
    try:
        if store:
            start = plan_pipeline(args, settings, args.quiet).begin()
            settings = start.settings
            handover = Handover(start, True, args.quiet, lambda sup: announce_ui(args, sup))
            publish, publish_columns = handover.publish, handover.publish_columns
        else:
            from producers.publisher import SegmentPublisher
            from schemas.runtime.topics import ensure_topics

            settings = connect(settings)
            ensure_topics(settings)

            publisher = SegmentPublisher(settings)
            publish, publish_columns = publisher.publish, publisher.publish_columns
            coverage.attach(settings)
        sources[0].exclude_ports(pipeline_ports(settings.kafka, settings.clickhouse))  # type: ignore[attr-defined]
        if cluster is not None:
            if handover is not None:  # it takes nothing before it knows its pods anyway
                handover.attach()
            from wiretide.kube.aim import aim_at_pods

            targets = aim_at_pods(cluster, sources, settings, node)
        loop = LiveLoop(sources, publish, publish_columns=publish_columns)
        started = _run_loop(loop, args.duration, stop, progress, handover, settings, coverage)
        if handover is not None:
            publisher, supervisor = handover.attach()
            coverage.attach(settings)
            coverage.publish_final()
            ui_port = handover.ui_port
            store_all(publisher, supervisor, progress, settings.data)
        else:
            coverage.publish_final()
            publisher.flush()
        flowing = time.monotonic() - started
    finally:
        if targets is not None:
            targets.stop()
        for source in sources:
            source.close()
        if handover is not None:
            handover.close()
        progress.done()
        stop.restore()
    _report_capture(loop, where)
    if args.tls and supervisor is None:
        print(tls_line(coverage.facts(), None))
    if supervisor is not None:
        span = "from the capture's start to the last call stored"
        report_stored(supervisor, settings.data, flowing, span)
        if args.tls:
            print(tls_line(coverage.facts(), settings, since_ns=int((time.time() - flowing) * 1e9)))
        say_left_running(kafka_given, settings)
        keep_ui(args, settings, ui_port)
    return 0


def _run_loop(
    loop: LiveLoop,
    duration: float | None,
    stop: _StopOnSignal,
    progress: Progress,
    handover: Handover | None,
    settings: Settings,
    coverage: AgentCoverage,
) -> float:
    """Run the capture until stopped; returns when it started (time.monotonic())."""
    data = settings.data
    started = time.monotonic()
    deadline = started + duration if duration else None

    def should_stop() -> bool:
        return stop.requested or (deadline is not None and time.monotonic() >= deadline)

    last_status = [0.0]
    from wiretide.cli.metrics_port import capture_counters

    counters = capture_counters(settings)  # the agent's /metrics (--metrics-port)

    def on_status() -> None:
        if handover is not None and handover.publisher is None:
            handover.poll()  # every few tenths while the pipeline starts: hand over at once
        if handover is None or handover.publisher is not None:
            coverage.attach(settings)  # Kafka and its topics are there
            coverage.tick()
        if time.monotonic() - last_status[0] < 1.0:
            return
        last_status[0] = time.monotonic()
        health.beat("agent", data)
        waiting = ""
        if handover is not None:
            if handover.supervisor is not None:
                handover.supervisor.check()
            else:
                waiting = f", waiting for {handover.start.waiting_for}"
        s = loop.stats()
        counters.update(s)
        stored = SinkStatus.read(data).written
        progress.show(
            f"capturing {s.get('packets', 0)} packets, {s.get('kernel_drops', 0)} "
            f"kernel drops, {stored} calls stored ({time.monotonic() - started:.0f}s){waiting}",
            force=True,
        )

    # Always said (like tcpdump's "listening on"): scripts wait for it.
    where = loop.sources[0].where  # type: ignore[attr-defined]
    _say(f"capturing on {where}; Ctrl-C stops and stores")
    loop.run(should_stop, on_status, status_every_s=0.2)
    loop.finish(before_close=coverage.freeze)
    return started


def _report_capture(loop: LiveLoop, where: str) -> None:
    s = loop.stats()
    skipped = ", ".join(
        f"{k.removeprefix('skipped_')} {v}"
        for k, v in sorted(s.items())
        if k.startswith("skipped_")
    )
    print(
        f"captured {s.get('packets', 0)} packets ({s.get('segments', 0)} segments) on {where}; "
        f"kernel drops: {s.get('kernel_drops', 0)} of {s.get('kernel_packets', 0)}; "
        f"skipped: {skipped or 'none'}"
    )
