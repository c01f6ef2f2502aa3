"""CPU cost of the agent's packet path for `tap --pcap`, next to tshark's on the same file.

    python bench/bench_pcap.py CAPTURE [--repeat N] [--no-tshark] [--no-v1]

Everything the agent does from the file to Kafka except Kafka itself, in CPU microseconds
per packet (process CPU time, best of N runs; wall time is noise on a shared machine):

- agent (batches): `read_batches` (chunks decoded with numpy, batched per flow) and
  `encode_columns`, one message per batch: what `tap --pcap` publishes.
- agent (segments): `read_segments` -> `FlowBatcher` -> `encode_segment_batch` (version 1,
  one Avro record per segment): the path before the columnar one, for reference.
- read only: `read_segments` (Ethernet pcap also a chunk at a time), every Segment built
  and dropped: what `tap --pcap` pays before batching while it publishes Segments.
- decode: what a stream worker pays to turn those messages back into Segments, per segment,
  for both wire versions.
- tshark: `tshark -r CAPTURE -T fields -e tcp.seq -e tcp.len` (the child's CPU time), the
  reference for reading and dissecting packets down to TCP.

Target (issue 14): agent <= 1 us per packet.
"""

from __future__ import annotations

import argparse
import collections
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import producers.columnar  # noqa: E402, F401 - imported before timing, as the agent has
from producers.batcher import FlowBatcher  # noqa: E402
from producers.pcap import CaptureError, ReadStats, read_batches, read_segments  # noqa: E402
from schemas.segment_wire import decode_segments  # noqa: E402
from schemas.serde import decode_segment_batch, encode_segment_batch  # noqa: E402

KEEP = 200  # messages decoded for the worker's figure


def _cpu(fn: Callable[[], object]) -> tuple[float, object]:
    c0 = time.process_time()
    out = fn()
    return time.process_time() - c0, out


def agent_batches(path: str, keep: int = 0) -> tuple[ReadStats, list[bytes], int, int]:
    """(stats, the first `keep` messages, messages, bytes): each message is dropped once
    made, as the publisher hands it to Kafka and drops it."""
    stats = ReadStats()
    kept, count, size = [], 0, 0
    for m in read_batches(path, stats=stats):
        count += 1
        size += len(m.value)
        if count <= keep:
            kept.append(m.value)
    return stats, kept, count, size


def agent_segments(path: str, keep: int = 0) -> tuple[ReadStats, list[bytes]]:
    stats = ReadStats()
    batcher = FlowBatcher()
    kept = []

    def encoded(flow: str, batch: list) -> None:
        value = encode_segment_batch(flow, batch)
        if len(kept) < keep:
            kept.append(value)

    for seg in read_segments(path, stats=stats):
        full = batcher.add(seg)
        if full is not None:
            encoded(*full)
    for flow, batch in batcher.drain():
        encoded(flow, batch)
    return stats, kept


def read_only(path: str) -> tuple[ReadStats, int]:
    stats = ReadStats()
    payload = 0
    for seg in read_segments(path, stats=stats):
        payload += len(seg.payload)
    return stats, payload


def best(repeat: int, fn: Callable[[], object]) -> tuple[float, object]:
    runs = [_cpu(fn) for _ in range(max(1, repeat))]
    return min(runs, key=lambda r: r[0])


def decode_cost(msgs: list[bytes], decode: Callable[[bytes], list], repeat: int) -> float:
    """CPU us per segment to decode every message."""
    cpu, segments = best(repeat, lambda: sum(len(decode(m)) for m in msgs))
    return cpu / max(1, int(segments)) * 1e6  # type: ignore[call-overload]


def tshark_cpu(path: str) -> float | None:
    """CPU seconds (user + system) of tshark reading the file down to TCP."""
    tshark = shutil.which("tshark")
    if tshark is None:
        return None
    cmd = [tshark, "-n", "-r", path, "-T", "fields", "-e", "tcp.seq", "-e", "tcp.len"]
    cmd += ["-o", "tcp.relative_sequence_numbers:FALSE"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("capture")
    ap.add_argument("--repeat", type=int, default=3, help="runs; the cheapest one counts")
    ap.add_argument("--no-tshark", action="store_true", help="skip the tshark reference")
    ap.add_argument("--no-v1", action="store_true", help="skip the segment-by-segment path")
    args = ap.parse_args(argv)
    path = args.capture
    try:
        cpu, (stats, _, count, size) = best(args.repeat, lambda: agent_batches(path))  # type: ignore[misc]
    except CaptureError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    packets = max(1, stats.packets)
    print(
        f"capture: {stats.packets} packets, {stats.segments} segments,"
        f" {size:,} bytes in {count} messages"
    )
    if stats.skipped:
        top = collections.Counter(stats.skipped).most_common()
        print("  skipped: " + ", ".join(f"{k}={v}" for k, v in top))
    print(f"agent (batches):  {cpu / packets * 1e6:6.3f} us/packet CPU  (target <= 1)")
    v2_decode = decode_cost(agent_batches(path, KEEP)[1], decode_segments, args.repeat)
    if not args.no_v1:
        cpu1, _ = best(args.repeat, lambda: agent_segments(path))
        print(f"agent (segments): {cpu1 / packets * 1e6:6.3f} us/packet CPU  (version 1 wire)")
        cpu_read, _ = best(args.repeat, lambda: read_only(path))
        print(f"read only:        {cpu_read / packets * 1e6:6.3f} us/packet CPU  (read_segments)")
        v1_decode = decode_cost(agent_segments(path, KEEP)[1], decode_segment_batch, args.repeat)
        print(f"worker decode:    {v2_decode:6.3f} us/segment (version 2), {v1_decode:.3f} (1)")
    else:
        print(f"worker decode:    {v2_decode:6.3f} us/segment (version 2)")
    if not args.no_tshark:
        ref = tshark_cpu(path)
        if ref is None:
            print("tshark: not installed, no reference")
        else:
            print(
                f"tshark:           {ref / packets * 1e6:6.3f} us/packet CPU"
                f" ({ref:.2f} CPU-s); agent/tshark CPU = {cpu / ref:.2f}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
