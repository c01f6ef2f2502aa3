"""What each CLI command does; thin glue over producers/, streams/ and sinks/."""

from __future__ import annotations

import argparse
import importlib
import itertools
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from schemas import config
from schemas.errors import WiretideError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from producers.pcap import ReadStats
    from producers.publisher import SegmentPublisher
    from schemas.records import Segment
    from wiretide.local import Supervisor
    from wiretide.progress import Progress


def run_broker(args: argparse.Namespace) -> int:
    from wiretide.broker import local_broker

    starting = args.action == "start"
    data = config.writable_data_dir(args.data) if starting else config.data_dir(args.data)
    broker = local_broker(data, args.port)
    if starting:
        print(f"Kafka broker up at {broker.start()}")
    elif args.action == "stop":
        print("Kafka broker stopped" if broker.stop() else "no Kafka broker was running")
    else:
        up = broker.is_up()
        print(f"Kafka broker {'up at ' + broker.bootstrap if up else 'not running'}")
        return 0 if up else 1
    return 0


def _policy(path: str | None):  # noqa: ANN202 - returns RedactionPolicy
    from streams.redact import RedactionPolicy

    if not path:
        return RedactionPolicy.default()
    try:
        return RedactionPolicy.from_yaml(path)
    except (OSError, ValueError) as exc:
        said = str(exc)  # names the file already, as a rule
        raise WiretideError(said if path in said else f"redaction file {path}: {said}") from None


def _check_rules(path: str | None) -> None:
    """Read the validation rules now: a bad file fails in one line before anything starts."""
    if not path:
        return
    from streams.rules import RulesError, load_rules

    try:
        load_rules(path)
    except RulesError as ex:
        more = f"; see all with: wiretide rules check {path}" if len(ex.problems) > 1 else ""
        raise WiretideError(f"rules file {ex}{more}") from None


def _start_pipeline(args: argparse.Namespace, data: Path) -> tuple[str, Supervisor]:
    """Broker, topics, stream workers and the sink, ready for segments."""
    from schemas.runtime.topics import ensure_topics
    from wiretide.broker import resolve_bootstrap
    from wiretide.local import Supervisor, ui_listen

    bootstrap = resolve_bootstrap(args.kafka, data)
    # Every core by default; partitions enough that no worker idles.
    workers = args.workers or os.cpu_count() or 1
    partitions = max(config.partitions(), workers)
    print(f"tap: {workers} stream workers, {partitions} partitions", flush=True)
    ensure_topics(bootstrap, partitions)
    extra = ["--clickhouse", args.clickhouse] if args.clickhouse else []
    listen = ui_listen(data, getattr(args, "ui_port", None), getattr(args, "no_ui", True))
    extra += ["--serve", listen] if listen else []
    if args.redaction:
        os.environ["WIRETIDE_REDACTION"] = os.path.abspath(args.redaction)
    if getattr(args, "rules", None):  # the workers validate, the hub shows them
        os.environ["WIRETIDE_RULES"] = os.path.abspath(args.rules)
    (data / "sink-status.json").unlink(missing_ok=True)
    names = {f"worker-{i + 1}": [] for i in range(workers)}
    supervisor = Supervisor(bootstrap, data, {"sink": extra, **names})
    try:  # every worker in the group before the first segment: they share the work
        supervisor.wait_for_group(config.STREAMS_GROUP, workers)
    except BaseException:
        supervisor.stop()
        raise
    return bootstrap, supervisor


def _store_all(
    publisher: SegmentPublisher,
    bootstrap: str,
    supervisor: Supervisor,
    progress: Progress,
    data: Path,
) -> None:
    """Mark the end of the capture, then wait until every call is stored."""
    from wiretide.local import read_status, wait_until_stored

    publisher.publish_end_of_capture()

    def on_progress(stage: str, lag: int) -> None:
        stored = read_status(data).get("written", 0)
        progress.show(f"{stage:9s} {lag} messages left, {stored} calls stored")

    wait_until_stored(bootstrap, supervisor, on_progress)


def _report_stored(supervisor: Supervisor, data: Path, flowing: float, span: str) -> None:
    """`flowing`: the seconds calls were moving, which `span` names (start-up and the
    processes' shutdown are not the calls' time: they would make a short capture slow)."""
    from wiretide.local import read_status

    status = read_status(data)
    stored = status.get("stored_after", 0) - status.get("stored_before", 0)
    again = status.get("stored_before", 0)
    note = f"; {again} calls were already stored" if again else ""
    rate = stored / flowing if flowing > 0 else 0.0
    print(f"stored {stored} calls in {flowing:.2f}s ({rate:.0f} calls/s, {span}{note})")
    restarts = {r: n for r, n in supervisor.restarts.items() if n}
    if restarts:
        print("restarted after a crash: " + ", ".join(f"{r} x{n}" for r, n in restarts.items()))


LIVE_ONLY = {
    "interface": "--interface",
    "port": "--port",
    "host": "--host",
    "duration": "--for",
    "netns": "--netns",
    "tls": "--tls",
    "pod_regex": "POD_REGEX",
    "namespace": "-n",
    "all_namespaces": "-A",
}


def run_tap(args: argparse.Namespace) -> int:
    if args.deploy:  # onto a cluster with helm, its hub forwarded here
        from wiretide.deploy_tap import run_tap_deploy

        return run_tap_deploy(args)
    if args.pcap:
        used = [flag for name, flag in LIVE_ONLY.items() if getattr(args, name, None)]
        if used:
            raise WiretideError(
                f"{', '.join(used)}: for live capture only; leave out --pcap to capture live"
            )
        return _tap_pcap(args)
    return _tap_live(args)


def _tap_pcap(args: argparse.Namespace) -> int:
    from producers.pcap import ReadStats, read_segments
    from producers.publisher import SegmentPublisher
    from wiretide.progress import Progress

    _policy(args.redaction)  # fail now on a bad file, not inside a worker
    _check_rules(args.rules or config.rules_file())
    segments = read_segments(args.pcap, stats=(stats := ReadStats()))
    first = next(segments, None)  # opens and checks the file before anything starts
    data = config.writable_data_dir(args.data)
    bootstrap, supervisor = _start_pipeline(args, data)
    progress = Progress(False if args.quiet else None)
    try:
        ui_port = _announce_ui(args, supervisor)
        publisher = SegmentPublisher(bootstrap)
        started = time.monotonic()
        _publish_capture(args.pcap, first, segments, stats, publisher, progress)
        _store_all(publisher, bootstrap, supervisor, progress, data)
        flowing = time.monotonic() - started
    finally:
        supervisor.stop()
        progress.done()
    skipped = ", ".join(f"{k} {v}" for k, v in sorted(stats.skipped.items())) or "none"
    print(f"read {stats.packets} packets ({stats.segments} segments); skipped: {skipped}")
    _report_stored(
        supervisor, data, flowing, "from the first segment published to the last call stored"
    )
    _say_left_running(args, data)
    _keep_ui(args, data, bootstrap, ui_port)
    return 0


def _say_left_running(args: argparse.Namespace, data: Path) -> None:
    """A tap on the local broker leaves it up (the next tap starts at once, export reads
    its packets): say so, and how to stop it."""
    from wiretide.broker import left_running_note

    if args.kafka or os.environ.get("WIRETIDE_KAFKA"):
        return
    note = left_running_note(data)
    if note:
        print(f"wiretide: {note}", file=sys.stderr, flush=True)


def _publish_capture(
    path: str,
    first: Segment | None,
    segments: Iterator[Segment],
    stats: ReadStats,
    publisher: SegmentPublisher,
    progress: Progress,
) -> None:
    from producers.batcher import FlowBatcher
    from wiretide.progress import Progress

    batcher = FlowBatcher()
    size = max(1, os.path.getsize(path))
    if first is not None:
        for seg in itertools.chain((first,), segments):
            full = batcher.add(seg)
            if full is not None:
                publisher.publish(*full)
                progress.show(
                    f"reading  {Progress.bar(getattr(stats, 'bytes_read', 0), size)} "
                    f"{stats.packets} packets"
                )
    for fid, batch in batcher.drain():
        publisher.publish(fid, batch)


def _agent_pcap(args: argparse.Namespace) -> int:
    """Publish a capture's segments to Kafka for the stream workers, then mark its end."""
    from producers.pcap import ReadStats, read_segments
    from producers.publisher import SegmentPublisher
    from schemas.runtime.topics import ensure_topics
    from wiretide.broker import resolve_bootstrap
    from wiretide.progress import Progress

    segments = read_segments(args.pcap, stats=(stats := ReadStats()))
    first = next(segments, None)
    data = config.writable_data_dir(args.data)
    bootstrap = resolve_bootstrap(args.kafka, data)
    ensure_topics(bootstrap)
    progress = Progress(False)
    publisher = SegmentPublisher(bootstrap)
    _publish_capture(args.pcap, first, segments, stats, publisher, progress)
    publisher.publish_end_of_capture()
    print(f"published {stats.segments} segments of {stats.packets} packets to {bootstrap}")
    _say_left_running(args, data)
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


def _pipeline_ports(bootstrap: str, clickhouse: str | None) -> list[int]:
    """Ports of the pipeline's own connections, kept out of a live capture: Kafka (and
    a local broker's controller, on the next port) and a ClickHouse server."""
    from urllib.parse import urlsplit

    ports = set()
    for server in bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        if port.isdigit():
            ports.add(int(port))
            if host in ("127.0.0.1", "localhost", "[::1]"):
                ports.add(int(port) + 1)
    if clickhouse and clickhouse.startswith(("http://", "https://")):
        try:
            url = urlsplit(clickhouse)
            ports.add(url.port or (443 if url.scheme == "https" else 8123))
        except ValueError:
            pass
    return sorted(p for p in ports if 0 < p < 65536)


def _wants_targeting(args: argparse.Namespace) -> bool:
    return bool(args.pod_regex or args.namespace or args.all_namespaces)


def _cluster(args: argparse.Namespace):  # noqa: ANN202 - (KubeApi, PodSelector)
    """The API and the pod selector of a targeted tap, checked before anything starts."""
    from wiretide.kube import model
    from wiretide.kube.client import KubeApi

    try:
        selector = model.PodSelector.parse(
            args.pod_regex, args.namespace or (), args.all_namespaces
        )
    except ValueError as ex:
        raise WiretideError(str(ex)) from None
    return KubeApi(args.kubeconfig), selector


def _aim_at_pods(cluster, sources: list, bootstrap: str, node: str):  # noqa: ANN001, ANN202
    """Kubernetes targeting: pods from the API, the capture narrowed to their IPs, the
    endpoints topic filled; returns (TapTargets, extra sources for meshed pods here)."""
    from producers.afpacket import AfPacketCapture
    from wiretide.kube import model
    from wiretide.kube.follow import TapTargets
    from wiretide.kube.pids import local_pids, pids_of_containers
    from wiretide.kube.publish import EndpointPublisher

    api, selector = cluster
    tls = next((s for s in sources if hasattr(s, "set_pids")), None)

    def aim_tls(picture) -> None:  # noqa: ANN001 - the targeting's Picture
        if tls is not None:  # the targeted pods' processes on this node, as they change
            tls.set_pids(local_pids(picture.targets, node))

    targets = TapTargets(api, selector, sources[0], EndpointPublisher(bootstrap), aim_tls)
    picture = targets.start()
    where = "every namespace" if selector.all_namespaces else ", ".join(selector.namespaces)
    print(f"targeting {len(picture.targets)} pods ({len(picture.target_ips)} IPs) in {where}",
          file=sys.stderr, flush=True)  # fmt: skip
    # A meshed pod's calls are mTLS between pods; the plaintext leg runs between the app
    # and its sidecar on the pod's own loopback, so capture there too (pods on this node).
    extra = []
    for pod in picture.targets:
        if not model.mesh_of(pod) or (pod.get("spec") or {}).get("nodeName") != node:
            continue
        pids = [p for ps in pids_of_containers(model.container_ids(pod)).values() for p in ps]
        if pids:
            extra.append(AfPacketCapture(["lo"], netns=f"pid:{pids[0]}", node=node))
    return targets, extra


def run_agent(args: argparse.Namespace) -> int:
    """A node agent: the live capture of `tap` (or a capture file's replay), publishing to
    Kafka, no local storage."""
    if args.pcap:
        used = [flag for name, flag in LIVE_ONLY.items() if getattr(args, name, None)]
        if used:
            raise WiretideError(f"{', '.join(used)}: for live capture only; leave out --pcap")
        return _agent_pcap(args)
    return _tap_live(args, store=False)


def _announce_ui(args: argparse.Namespace, supervisor: Supervisor) -> int | None:
    from wiretide.local import announce_ui

    if "--serve" not in supervisor.roles["sink"]:
        return None
    return announce_ui(supervisor, args.quiet)


def _keep_ui(args: argparse.Namespace, data: Path, bootstrap: str, port: int | None) -> None:
    from wiretide.local import keep_serving_ui

    if args.keep_ui and port is not None:
        keep_serving_ui(config.store_dsn(data, args.clickhouse), data, bootstrap, port)


def run_health(args: argparse.Namespace) -> int:
    from schemas.runtime import health

    ok, message = health.check(args.component, args.max_age, config.data_dir(args.data))
    print(message, file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


def _tap_live(args: argparse.Namespace, store: bool = True) -> int:
    from producers.afpacket import RingSpec
    from producers.live import LiveLoop, open_sources
    from producers.publisher import SegmentPublisher
    from schemas.runtime import health
    from wiretide.local import read_status
    from wiretide.progress import Progress

    _policy(getattr(args, "redaction", None))
    _check_rules(getattr(args, "rules", None) or config.rules_file())
    data = config.writable_data_dir(args.data)
    node = os.environ.get("WIRETIDE_NODE") or os.uname().nodename
    # Opened first: no privilege, no such interface or a bad filter fails in one line
    # before the broker and workers start.
    cluster = _cluster(args) if _wants_targeting(args) else None
    tls_pids = None  # None: every process on this host
    if cluster is not None and args.tls:
        from wiretide.kube.pids import local_pids
        from wiretide.kube.targeting import Targeting

        tls_pids = local_pids(Targeting(*cluster).refresh().targets, node)
    from producers.afpacket.capture import NO_HOST

    sources = open_sources(
        args.interface,
        ports=args.port or [],
        # A targeted capture takes nothing until it knows its pods' IPs (else it would
        # catch its own calls to the Kubernetes API).
        hosts=[NO_HOST] if cluster is not None else args.host or [],
        netns=args.netns,
        tls=args.tls,
        tls_pids=tls_pids,
        node=node,
        spec=RingSpec(block_size=1 << 20, block_nr=max(2, args.buffer)),
    )
    where = sources[0].where  # type: ignore[attr-defined]
    stop = _StopOnSignal()
    progress = Progress(False if not store or args.quiet else None)
    supervisor = targets = ui_port = None
    try:
        if store:
            bootstrap, supervisor = _start_pipeline(args, data)
            ui_port = _announce_ui(args, supervisor)
        else:
            from schemas.runtime.topics import ensure_topics
            from wiretide.broker import resolve_bootstrap

            bootstrap = resolve_bootstrap(args.kafka, data)
            ensure_topics(bootstrap)
        clickhouse = getattr(args, "clickhouse", None)
        sources[0].exclude_ports(_pipeline_ports(bootstrap, clickhouse))  # type: ignore[attr-defined]
        if _wants_targeting(args):
            targets, meshed = _aim_at_pods(cluster, sources, bootstrap, node)
            sources.extend(meshed)
        publisher = SegmentPublisher(bootstrap)
        loop = LiveLoop(sources, publisher.publish)
        started = time.monotonic()
        deadline = started + args.duration if args.duration else None

        def should_stop() -> bool:
            return stop.requested or (deadline is not None and time.monotonic() >= deadline)

        def on_status() -> None:
            health.beat("agent", data)
            if supervisor is not None:
                supervisor.check()
            s = loop.stats()
            stored = read_status(data).get("written", 0)
            progress.show(
                f"capturing {s.get('packets', 0)} packets, {s.get('kernel_drops', 0)} "
                f"kernel drops, {stored} calls stored ({time.monotonic() - started:.0f}s)",
                force=True,
            )

        # Always said (like tcpdump's "listening on"): scripts wait for it.
        print(f"capturing on {where}; Ctrl-C stops and stores", file=sys.stderr, flush=True)
        loop.run(should_stop, on_status)
        loop.finish()
        if supervisor is not None:
            _store_all(publisher, bootstrap, supervisor, progress, data)
        else:
            publisher.flush()
        flowing = time.monotonic() - started
    finally:
        if targets is not None:
            targets.stop()
        for source in sources:
            source.close()
        if supervisor is not None:
            supervisor.stop()
        progress.done()
        stop.restore()
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
    if supervisor is not None:
        _report_stored(
            supervisor, data, flowing, "from the capture's start to the last call stored"
        )
        _say_left_running(args, data)
        _keep_ui(args, data, bootstrap, ui_port)
    return 0


def run_query(args: argparse.Namespace) -> int:
    from sinks.clickhouse import datadir
    from sinks.clickhouse.connect import open_store
    from sinks.clickhouse.reader import read_calls, stream_calls
    from wiretide.hub.client import find_owner
    from wiretide.kfl import parse, to_sql

    query = parse(args.filter)  # before opening the store: a typo costs nothing
    where, params = to_sql(query)
    limit = args.limit if args.limit is not None else query.limit
    data = config.data_dir(args.data)
    out = sys.stdout
    hub = find_owner(data, args.clickhouse)
    if hub is not None:  # a tap owns the store: ask it
        for line in hub.lines("/api/export.jsonl", {"q": args.filter, "limit": limit}):
            out.write((line if args.json else _one_line(json.loads(line))) + "\n")
        return 0
    dsn = config.store_dsn(data, args.clickhouse)
    datadir.require_store(dsn)
    with open_store(dsn, ttl_days=None) as store:
        if limit is None:  # printed as they come: memory stays flat for any number
            calls = stream_calls(store, where_sql=where, params=params)
        else:  # the newest `limit`, oldest first: at most `limit` held
            calls = iter(read_calls(store, limit=limit, where_sql=where, params=params))
        for call in calls:
            out.write(
                (json.dumps(call, ensure_ascii=False) if args.json else _one_line(call)) + "\n"
            )
    return 0


def run_kfl(args: argparse.Namespace) -> int:
    from wiretide.kfl import check, describe_fields

    print(check(args.filter) if args.kfl_command == "check" else describe_fields())
    return 0


def _one_line(call: dict) -> str:
    req, resp = call["request"], call["response"]
    status = resp["status"] if resp else "-"
    elapsed = f"{call['elapsed_ms']:.1f}ms" if call.get("elapsed_ms") is not None else "-"
    src, dst = call["src"], call["dst"]
    target = req["path"] + ("?" + req["query"] if req.get("query") else "")
    return (
        f"{call['timestamp']}  {call['protocol']:5s} {src['ip']}:{src['port']} -> "
        f"{dst['ip']}:{dst['port']}  {req['method']} {target}  {status}  {elapsed}"
    )


def _tune_gc() -> None:
    """Records are acyclic: collect cycles rarely, and never scan the start-up heap again."""
    import gc

    gc.freeze()
    gc.set_threshold(100_000, 50, 100)


def _own_data_dir(explicit: str | None) -> Path:
    """A pipeline process's data dir, also made this process's default: the code that
    reads WIRETIDE_DATA (the worker's heartbeats, the hub) finds --data."""
    data = config.writable_data_dir(explicit)
    os.environ["WIRETIDE_DATA"] = str(data)
    return data


def run_worker(args: argparse.Namespace) -> int:
    from wiretide.broker import resolve_bootstrap

    os.environ["WIRETIDE_KAFKA"] = resolve_bootstrap(args.kafka, _own_data_dir(args.data))
    from streams.app import run

    _tune_gc()
    return run()


def run_sink(args: argparse.Namespace) -> int:
    data = _own_data_dir(args.data)  # first: the imports below read WIRETIDE_DATA
    from sinks.clickhouse.connect import open_store
    from sinks.clickhouse.reader import count_calls
    from sinks.clickhouse.sink import CallSink
    from sinks.clickhouse.writer import CallWriter
    from wiretide.broker import resolve_bootstrap
    from wiretide.local import read_status

    bootstrap = resolve_bootstrap(args.kafka, data)
    store = open_store(config.store_dsn(data, args.clickhouse), ttl_days=config.retention_days())
    status_file = data / "sink-status.json"
    # A restarted sink keeps the first baseline, so the run's count stays right.
    before = read_status(data).get("stored_before")
    if before is None:
        before = count_calls(store)
        status_file.write_text(json.dumps({"stored_before": before}))
    stopping = []
    _tune_gc()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.append(True))
    writer, hub = CallWriter(store), None
    if args.serve:
        writer, hub = _serve_beside_sink(args.serve, store, writer, data, bootstrap)
    try:
        sink = CallSink(
            bootstrap, writer, status_file=status_file, extra_status={"stored_before": before}
        )
        sink.run(lambda: bool(stopping))
    finally:
        if hub is not None:
            hub.stop(data)
        elif args.serve:
            from wiretide.hub.client import withdraw

            withdraw(data)  # the note saying why there is no hub
    status = {
        "written": sink.written,
        "dead_letters": sink.dead_letters,
        "pid": os.getpid(),  # the final count too says whose it is (one file, many lives)
        "stored_before": before,
        "stored_after": count_calls(store),
    }
    status_file.write_text(json.dumps(status))
    return 0


def _serve_beside_sink(listen: str, store, writer, data: Path, bootstrap: str):  # noqa: ANN001, ANN202
    """The hub in this process on the sink's open store (chDB has one owner): inserts and
    the hub's reads take turns on one lock. (writer, ServedHub); a hub that cannot start
    is one line in the log, and the sink goes on."""
    from wiretide.hub.store import HubStore
    from wiretide.local import ServedHub, SharedStoreWriter

    shared = HubStore(store)
    os.environ.setdefault("WIRETIDE_KAFKA", bootstrap)  # where the export route reads
    try:
        hub = ServedHub.start(shared, listen, data, lambda: bootstrap)
    except WiretideError as ex:
        print(f"wiretide sink: not serving the hub: {ex}", file=sys.stderr, flush=True)
        from wiretide.hub.client import advertise

        advertise(data, None, None, error=str(ex))  # the tap waiting for it learns why
        return writer, None
    print(f"wiretide sink: hub listening on {hub.url}", flush=True)
    return SharedStoreWriter(writer, shared.lock), hub


def run_export(args: argparse.Namespace) -> int:
    from wiretide.export import run_export as run

    return run(args)


# Commands whose code lives in a module of its own, imported only when one runs.
_DELEGATED = {
    "run_deploy": "wiretide.deploy",
    "run_undeploy": "wiretide.deploy",
    "run_hub": "wiretide.hub.cli",
    "run_map": "wiretide.map_cli",
    "run_rules": "wiretide.rules_cli",
}


def __getattr__(name: str) -> Callable[[argparse.Namespace], int]:
    module = _DELEGATED.get(name)
    if module is None:
        raise AttributeError(name)
    return getattr(importlib.import_module(module), name)
