"""Stream worker CPU per call on a real capture, against tshark on the same packets.

    python bench/bench_worker.py --pcap /tmp/bench/few.pcap [--packets N] [--partitions 2]
                                 [--no-tshark]

The capture's segments are batched as the agent batches them (`FlowBatcher`), encoded as
the agent publishes them (columns, version 2 of the segments wire), and keyed to
partitions like Kafka's consistent partitioner (crc32 of the flow key); that part is not
timed. Then every message goes through the worker's own path,
`streams.app.Streams.on_message` (decode, reassemble, dissect, redact, enrich, rules,
encode one call batch per flow, produce), one pipeline per partition, with an
end-of-capture marker per partition last; `produce` is a counter instead of a Kafka
producer (librdkafka's cost stays out). Timed: CPU seconds of this process
(`time.process_time`), not wall time, which other processes on the machine distort.

Reference in the same run: `tshark -n -r PCAP -Y http.request` (with the capture's server
port decoded as HTTP), CPU seconds of the child from getrusage.
"""

from __future__ import annotations

import argparse
import itertools
import shutil
import sys
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from e2e import TSHARK_PREFS, scan_capture  # noqa: E402
from tshark import tshark_cpu  # noqa: E402

from producers.batcher import FlowBatcher  # noqa: E402
from producers.pcap import read_segments  # noqa: E402
from producers.publisher import partition_key  # noqa: E402
from schemas.config import EOF_HEADER, Settings  # noqa: E402
from schemas.segment_wire import encode_segments  # noqa: E402
from schemas.serde import decode_segment_batch  # noqa: E402
from streams.app import REGISTRY, Partition, Streams  # noqa: E402
from streams.enrich import Directory  # noqa: E402
from streams.pipeline import Pipeline  # noqa: E402
from streams.redact import RedactionPolicy  # noqa: E402


class CountingProducer:
    """Stands where the Kafka producer is: counts what would be sent, keeps nothing."""

    def __init__(self, calls_topic: str) -> None:
        self.calls_topic = calls_topic
        self.messages: dict[str, int] = {}
        self.bytes = 0

    def produce(self, topic: str, key=None, value=None, headers=None, on_delivery=None) -> None:  # noqa: ANN001
        self.messages[topic] = self.messages.get(topic, 0) + 1
        self.bytes += len(value or b"")


def agent_messages(pcap: Path, packets: int | None, partitions: int) -> list[tuple]:
    """[(partition, key, value)] as the agent would publish the capture (not timed)."""
    batcher = FlowBatcher()
    out = []

    def keep(fid: str, batch: list) -> None:
        key = partition_key(fid)
        out.append((zlib.crc32(key) % partitions, key, encode_segments(fid, batch)))

    segments = read_segments(pcap)
    for seg in itertools.islice(segments, packets) if packets else segments:
        full = batcher.add(seg)
        if full is not None:
            keep(*full)
    for fid, batch in batcher.drain():
        keep(fid, batch)
    return out


def run_worker(messages: list[tuple], partitions: int) -> tuple[float, int, CountingProducer]:
    """(CPU seconds, calls made, what was produced) for the worker's path over `messages`."""
    settings = Settings()
    producer = CountingProducer(settings.calls_topic)
    failed: list[str] = []
    streams = Streams(settings, producer.produce, lambda err, msg: failed.append(err))
    policy = RedactionPolicy.default()
    directory = Directory()
    for p in range(partitions):
        pipe = Pipeline(REGISTRY, policy, directory=directory)
        streams.parts[p] = Partition(pipe, None, None)
    offsets = [0] * partitions
    on_message = streams.on_message
    eof = [(EOF_HEADER, b"bench")]
    t0 = time.process_time()
    for p, key, value in messages:
        on_message(p, offsets[p], key, value, None)
        offsets[p] += 1
    for p in range(partitions):
        on_message(p, offsets[p], b"", b"", eof)
    cpu = time.process_time() - t0
    return cpu, streams.calls, producer


def run_decode(messages: list[tuple]) -> tuple[float, int]:
    t0 = time.process_time()
    n = 0
    for _, _, value in messages:
        n += len(decode_segment_batch(value))
    return time.process_time() - t0, n


def run_tshark(pcap: Path, packets: int | None) -> tuple[int, float] | None:
    """(requests tshark found, its CPU seconds), or None when tshark is missing."""
    if shutil.which("tshark") is None:
        print("tshark: not available")
        return None
    ports = scan_capture(pcap).server_ports
    decode_as = [a for port in ports for a in ("-d", f"tcp.port=={port},http")]
    limit = ["-c", str(packets)] if packets else []
    args = [*limit, *TSHARK_PREFS, *decode_as, "-Y", "http.request"]
    args += ["-T", "fields", "-e", "frame.number"]
    return tshark_cpu(pcap, *args)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pcap", type=Path, required=True, help="capture (bench/make_capture.sh)")
    ap.add_argument("--packets", type=int, default=0, help="only the first N packets")
    ap.add_argument("--partitions", type=int, default=2, help="pipelines (default 2)")
    ap.add_argument("--no-tshark", action="store_true")
    args = ap.parse_args()
    if not args.pcap.is_file():
        print(f"bench_worker: no such capture {args.pcap}", file=sys.stderr)
        return 2
    if args.partitions < 1:
        print("bench_worker: --partitions must be at least 1", file=sys.stderr)
        return 2
    packets = args.packets or None
    messages = agent_messages(args.pcap, packets, args.partitions)
    decode_cpu, segments = run_decode(messages)
    cpu, calls, producer = run_worker(messages, args.partitions)
    per_call = cpu / max(calls, 1) * 1e6
    print(
        f"worker: {len(messages):,} messages, {segments:,} segments -> {calls:,} calls in "
        f"{cpu:.2f} CPU-s: {per_call:.1f} us/call, {calls / cpu:,.0f} calls per CPU-s "
        f"(segment decode alone {decode_cpu / max(calls, 1) * 1e6:.1f} us/call)"
    )
    sent = ", ".join(f"{t} {n:,}" for t, n in sorted(producer.messages.items()))
    print(f"produced: {sent} ({producer.bytes / 1e6:.1f} MB)")
    if args.no_tshark:
        return 0
    result = run_tshark(args.pcap, packets)
    if result is None:
        return 0
    t_calls, t_cpu = result
    t_per_call = t_cpu / max(t_calls, 1) * 1e6
    print(
        f"tshark -Y http.request: {t_calls:,} requests in {t_cpu:.2f} CPU-s: "
        f"{t_per_call:.1f} us/call, {t_calls / t_cpu:,.0f} calls per CPU-s"
    )
    print(f"ratio: the worker is {t_per_call / per_call:.2f}x tshark's rate per CPU-s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
