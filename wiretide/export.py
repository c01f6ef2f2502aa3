"""PCAP export: the packets behind stored calls, read back from the segments topic.

    wiretide export --pcap OUT [KFL] [--since TIME] [--until TIME]

1. The store says which calls match (their flow ids and time spans).
2. The segments topic (Kafka, within its retention) is read from the earliest time any
   of them can have been published, on every partition, up to where it ends now; only
   batches keyed by one of those flows are decoded.
3. A segment is kept when its flow is a matching call's and its capture time falls in
   that call's span widened by one second each side; exact repeats (a capture replayed
   twice) are kept once.
4. The kept segments, in capture order, become a pcap (or pcapng) of raw IP packets
   (producers.pcap_writer).

A call none of whose segments are left in Kafka cannot be exported; the result says
how many, and when none can, that is an error. With a live owner of the data dir (a tap
serving the hub) the CLI asks its API (GET /api/export.pcap) instead of opening the store.
"""

from __future__ import annotations

import argparse
import bisect
import re
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from producers.pcap_writer import PcapngWriter, PcapWriter
from schemas.config import Settings
from schemas.errors import WiretideError
from schemas.records import Segment, segment_flow_id
from sinks.clickhouse.ddl import CALLS
from sinks.errors import one_line

if TYPE_CHECKING:
    from confluent_kafka import Consumer, TopicPartition

MARGIN_NS = 1_000_000_000  # a call's span is widened by this much on each side
FORMATS = ("pcap", "pcapng")
_UNITS_NS = {"ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9, "d": 86400 * 10**9}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_STALL_S = 30.0
# Our SQL parameters (the reader takes wt_*, KFL kfl*, the hub hub_*).
_SPANS_SQL = (
    "SELECT call_id, flow_id, toUnixTimestamp64Nano(ts) AS start_ns, "
    "greatest(toUnixTimestamp64Nano(ts), request_end_ns, response_ts_ns, response_end_ns) "
    "AS end_ns, source FROM {table} FINAL{where} ORDER BY ts {order}, call_id {order}{limit}"
)


class ExportError(WiretideError):
    """Nothing could be exported, or the filter, times or Kafka were wrong."""


@dataclass(frozen=True, slots=True)
class CallSpan:
    """Where a call's packets are: its flow and capture-time span."""

    call_id: str
    flow_id: str
    start_ns: int
    end_ns: int
    replayed: bool  # from a capture file: its times say nothing of when Kafka got it


@dataclass(frozen=True, slots=True)
class Export:
    data: bytes
    calls: int  # calls that matched
    exported: int  # calls with at least one packet in the file
    packets: int

    @property
    def missing(self) -> int:
        return self.calls - self.exported


def parse_time(text: str, what: str, now_ns: int | None = None) -> int:
    """Unix ns of `5m`/`2h`/`30s`/`1d`/`500ms` ago, or of an ISO 8601 time (UTC if no
    offset is given)."""
    now_ns = time.time_ns() if now_ns is None else now_ns
    raw = text.strip()
    match = _DURATION.fullmatch(raw)
    if match:
        return now_ns - int(float(match.group(1)) * _UNITS_NS[match.group(2)])
    try:
        moment = datetime.fromisoformat(raw[:-1] + "+00:00" if raw.endswith("Z") else raw)
    except ValueError:
        raise ExportError(
            f"{what} {text!r}: expected a time ago (30s, 5m, 2h, 1d) or an ISO time "
            "(2026-05-01T12:00:00Z)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp()) * 10**9 + moment.microsecond * 1000


def _clamp(ns: int) -> int:
    """Into what a DateTime64(9) holds (1970 to 2262 here; no capture is older)."""
    return min(max(ns, 0), 2**63 - 1)


def spans_query(
    where_sql: str,
    params: dict[str, object],
    since_ns: int | None,
    until_ns: int | None,
    limit: int | None,
) -> tuple[str, dict[str, object]]:
    """SQL (and parameters) for the spans of the matching calls; with `limit`, the newest."""
    conditions = [f"({where_sql})"] if where_sql else []
    bound = dict(params)
    if since_ns is not None:
        conditions.append("ts >= fromUnixTimestamp64Nano({exp_since:Int64}, 'UTC')")
        bound["exp_since"] = _clamp(since_ns)
    if until_ns is not None:
        conditions.append("ts <= fromUnixTimestamp64Nano({exp_until:Int64}, 'UTC')")
        bound["exp_until"] = _clamp(until_ns)
    where = " WHERE " + " AND ".join(conditions) if conditions else ""
    sql = _SPANS_SQL.format(
        table=CALLS,
        where=where,
        order="DESC" if limit is not None else "ASC",
        limit=f" LIMIT {max(int(limit), 0)}" if limit is not None else "",
    )
    return sql, bound


def find_spans(
    client: object,
    kfl: str,
    since_ns: int | None = None,
    until_ns: int | None = None,
) -> list[CallSpan]:
    """The matching calls' spans, read with a clickhouse-connect client (oldest first)."""
    from wiretide.kfl import parse, to_sql

    query = parse(kfl)
    where, params = to_sql(query)
    sql, bound = spans_query(where, params, since_ns, until_ns, query.limit)
    try:
        result = client.query(
            sql, parameters=bound, settings={"do_not_merge_across_partitions_select_final": 1}
        )
    except Exception as ex:
        raise ExportError(f"cannot read the matching calls: {one_line(ex)}") from ex
    spans = [
        CallSpan(call_id, flow, int(start), int(end), source == "pcap")
        for call_id, flow, start, end, source in result.result_rows
    ]
    spans.sort(key=lambda s: (s.start_ns, s.call_id))
    return spans


class SegmentPicker:
    """Sans-IO: offered segments in, the ones behind the given calls kept (once each).
    Per flow, the calls' widened spans are merged into sorted intervals, so a segment is
    judged by one binary search, however many calls its connection carried."""

    def __init__(self, spans: list[CallSpan]) -> None:
        self.spans = spans
        self.kept: list[Segment] = []
        self._seen: set[tuple] = set()
        self._times: dict[str, list[int]] = {}  # flow -> capture times of kept segments
        windows: dict[str, list[tuple[int, int]]] = {}
        for span in spans:
            windows.setdefault(span.flow_id, []).append(
                (span.start_ns - MARGIN_NS, span.end_ns + MARGIN_NS)
            )
        self._lows: dict[str, list[int]] = {}
        self._highs: dict[str, list[int]] = {}
        for flow, spans_of_flow in windows.items():
            lows, highs = self._lows[flow], self._highs[flow] = [], []
            for low, high in sorted(spans_of_flow):
                if highs and low <= highs[-1]:
                    highs[-1] = max(highs[-1], high)
                else:
                    lows.append(low)
                    highs.append(high)

    @property
    def flows(self) -> frozenset[str]:
        return frozenset(self._lows)

    def offer(self, seg: Segment) -> bool:
        flow = segment_flow_id(seg)
        lows = self._lows.get(flow)
        if lows is None:
            return False
        i = bisect.bisect_right(lows, seg.ts_ns) - 1
        if i < 0 or seg.ts_ns > self._highs[flow][i]:
            return False
        key = (
            seg.ts_ns, seg.src_ip, seg.src_port, seg.dst_ip, seg.dst_port, seg.transport,
            seg.seq, seg.ack, seg.flags, seg.payload,
        )  # fmt: skip
        if key in self._seen:
            return False
        self._seen.add(key)
        self.kept.append(seg)
        self._times.setdefault(flow, []).append(seg.ts_ns)
        return True

    @property
    def exported_calls(self) -> int:
        """Calls with at least one kept segment inside their widened span."""
        times = {flow: sorted(ts) for flow, ts in self._times.items()}
        covered = 0
        for span in self.spans:
            ts = times.get(span.flow_id)
            if not ts:
                continue
            j = bisect.bisect_left(ts, span.start_ns - MARGIN_NS)
            covered += j < len(ts) and ts[j] <= span.end_ns + MARGIN_NS
        return covered

    def in_capture_order(self) -> list[Segment]:
        return sorted(self.kept, key=lambda s: s.ts_ns)  # stable: topic order on ties


def earliest_publish_ms(spans: Iterable[CallSpan]) -> int | None:
    """Where to start reading the topic (Kafka timestamps are publish times, in ms): a
    live call's segments were published after they were captured; a replayed capture's
    times say nothing, so then from the start (None)."""
    starts = []
    for span in spans:
        if span.replayed:
            return None
        starts.append(span.start_ns)
    return (min(starts) - MARGIN_NS) // 10**6 if starts else None


def read_topic(
    settings: Settings, flows: frozenset[str], start_ms: int | None, topic: str | None = None
) -> Iterator[Segment]:
    """The segments of `flows` on every partition of the segments topic, from the first
    message published at or after `start_ms` (None: the oldest kept) to the end as of now."""
    from confluent_kafka import Consumer

    topic = topic or settings.segments_topic
    consumer = Consumer(
        settings.kafka_client(
            **{
                "group.id": f"{settings.prefix}wiretide-export-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "enable.partition.eof": True,
                "fetch.max.bytes": 64 * 1024 * 1024,
                "log_level": 3,
            },
        )
    )
    try:
        starts, ends = _start_offsets(consumer, settings, topic, start_ms)
        if starts:
            consumer.assign(starts)
            yield from _read_to_ends(consumer, settings, topic, ends, {f.encode() for f in flows})
    finally:
        consumer.close()


def _start_offsets(
    consumer: Consumer, settings: Settings, topic: str, start_ms: int | None
) -> tuple[list[TopicPartition], dict[int, int]]:
    """Where to start on each partition that holds messages, and its end offset as of now."""
    from confluent_kafka import OFFSET_BEGINNING, KafkaException, TopicPartition

    try:
        meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if meta is None or meta.error is not None:
            raise ExportError(f"topic {topic} is not on the Kafka at {settings.kafka}")
        ends = {}
        for p in sorted(meta.partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if high > low:
                ends[p] = high
        starts = [TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends]
        if start_ms is not None and ends:
            asked = [TopicPartition(topic, p, start_ms) for p in ends]
            starts = list(consumer.offsets_for_times(asked, timeout=10))
            for tp in starts:
                if tp.offset < 0:  # nothing published since
                    ends.pop(tp.partition)
            starts = [tp for tp in starts if tp.offset >= 0]
    except KafkaException as ex:
        raise ExportError(f"cannot read {topic} at {settings.kafka}: {_reason(ex)}") from None
    return starts, ends


def _read_to_ends(
    consumer: Consumer, settings: Settings, topic: str, ends: dict[int, int], keys: set[bytes]
) -> Iterator[Segment]:
    """The segments keyed by one of `keys`, until every partition reached its end."""
    from confluent_kafka import KafkaError

    from schemas.serde import decode_segment_batch

    left = set(ends)
    quiet_since = time.monotonic()
    while left:
        messages = consumer.consume(num_messages=500, timeout=1.0)
        if messages:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since > _STALL_S:
            raise ExportError(
                f"reading {topic} at {settings.kafka} stalled for {_STALL_S:.0f}s; retry"
            )
        for msg in messages:
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    left.discard(msg.partition())
                    continue
                if err.fatal() or not err.retriable():
                    raise ExportError(f"cannot read {topic}: {err.str()}")
                continue
            p, offset = msg.partition(), msg.offset()
            if offset >= ends.get(p, 0) - 1:
                left.discard(p)
            if offset >= ends.get(p, 0) or msg.key() not in keys or not msg.value():
                continue
            try:
                yield from decode_segment_batch(msg.value())
            except Exception:  # noqa: S112 - the workers dead-letter it; not ours to judge
                continue


def _reason(ex: BaseException) -> str:
    err = ex.args[0] if ex.args else None
    return err.str() if hasattr(err, "str") else one_line(ex)


def build_export(
    spans: list[CallSpan],
    segments: Callable[[frozenset[str], int | None], Iterable[Segment]],
    fmt: str = "pcap",
    topic: str = Settings().segments_topic,
) -> Export:
    """Pick the segments behind `spans` from what `segments(flows, start_ms)` yields (off
    `topic`) and write the capture. ExportError when no call matched or none has packets
    left."""
    if not spans:
        raise ExportError("no stored call matches; nothing to export")
    picker = SegmentPicker(spans)
    for seg in segments(picker.flows, earliest_publish_ms(spans)):
        picker.offer(seg)
    exported = picker.exported_calls
    if exported == 0:
        raise ExportError(
            f"none of the {len(spans)} matching calls can be exported: their packets are "
            f"gone from Kafka ({topic} keeps them about an hour); "
            "export sooner after capturing"
        )
    writer = PcapngWriter("exported by wiretide") if fmt == "pcapng" else PcapWriter()
    parts, packets = [writer.header()], 0
    for seg in picker.in_capture_order():
        chunk = writer.packets(seg)
        parts.append(chunk)
        packets += 1
    return Export(b"".join(parts), len(spans), exported, packets)


def missing_note(missing: int, calls: int, topic: str) -> str:
    return (
        f"{missing} of {calls} matching calls could not be exported: their packets are gone "
        f"from Kafka ({topic} keeps them about an hour)"
    )


def format_of(out: str, explicit: str | None = None) -> str:
    if explicit:
        return explicit
    return "pcapng" if out.lower().endswith(".pcapng") else "pcap"


def run_export(args: argparse.Namespace, settings: Settings) -> int:
    from wiretide.hub.client import find_owner
    from wiretide.kfl import parse

    parse(args.filter)  # a typo costs nothing
    since_ns = parse_time(args.since, "--since") if args.since else None
    until_ns = parse_time(args.until, "--until") if args.until else None
    fmt = format_of(args.pcap)
    _check_writable(args.pcap)  # before reading anything: a typo costs nothing
    hub = find_owner(settings)
    if hub is not None:
        params = {"q": args.filter, "since": args.since, "until": args.until, "format": fmt}
        with hub.open("/api/export.pcap", params) as response:
            body = response.read()
            head = response.headers
        result = Export(
            body,
            int(head.get("X-Wiretide-Calls", 0)),
            int(head.get("X-Wiretide-Exported-Calls", 0)),
            int(head.get("X-Wiretide-Packets", 0)),
        )
    else:
        result = _export_direct(args.filter, settings, fmt, since_ns, until_ns)
    _write(args.pcap, result.data)
    where = "stdout" if args.pcap == "-" else args.pcap
    print(
        f"exported {result.packets} packets of {result.exported} calls to {where}",
        file=sys.stderr if args.pcap == "-" else sys.stdout,
    )
    if result.missing:
        note = missing_note(result.missing, result.calls, settings.segments_topic)
        print(f"wiretide: warning: {note}", file=sys.stderr)
    return 0


def _export_direct(
    kfl: str, settings: Settings, fmt: str, since_ns: int | None, until_ns: int | None
) -> Export:
    from sinks.clickhouse import datadir
    from sinks.clickhouse.connect import open_store
    from wiretide.broker import local_broker

    datadir.require_store(settings.store_dsn)
    with open_store(
        settings.store_dsn, ttl_days=None, cluster=settings.clickhouse_cluster
    ) as store:
        spans = find_spans(store.client, kfl, since_ns, until_ns)
    if not spans:
        raise ExportError("no stored call matches; nothing to export")
    if settings.kafka:
        return export_from_kafka(settings, spans, fmt)
    broker = local_broker(settings)
    if not broker.home.is_dir():
        raise ExportError(
            f"no Kafka broker ever ran for {settings.data}, so it holds no packets; pass "
            "--kafka HOST:PORT of the broker the capture went to"
        )
    was_up = broker.is_up()
    bootstrap = broker.start()
    try:
        return export_from_kafka(settings.replace(kafka=bootstrap), spans, fmt)
    finally:
        if not was_up:  # started only to read it: leave nothing running
            broker.stop()


def export_from_kafka(settings: Settings, spans: list[CallSpan], fmt: str) -> Export:
    """The capture of `spans` from the segments topic on the settings' Kafka."""

    def segments(flows: frozenset[str], start_ms: int | None) -> Iterator[Segment]:
        return read_topic(settings, flows, start_ms)

    return build_export(spans, segments, fmt, settings.segments_topic)


def _check_writable(out: str) -> None:
    if out == "-":
        return
    folder = Path(out).resolve().parent
    if not folder.is_dir():
        raise ExportError(f"cannot write {out}: there is no directory {folder}")
    if Path(out).is_dir():
        raise ExportError(f"cannot write {out}: it is a directory")


def _write(out: str, data: bytes) -> None:
    if out == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    path = Path(out)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:6]}.tmp")
    try:
        tmp.write_bytes(data)
        tmp.replace(path)
    except OSError as ex:
        tmp.unlink(missing_ok=True)
        raise ExportError(f"cannot write {out}: {ex.strerror or ex}") from None
