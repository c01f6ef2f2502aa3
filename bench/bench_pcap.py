"""Throughput of `producers.pcap.read_segments` on a capture file, next to tshark's.

    python bench/bench_pcap.py CAPTURE [--repeat N] [--no-tshark]

Prints packets/s and segments/s of the reader (best of N runs, every segment built and
consumed) and, when tshark is installed, of `tshark -r CAPTURE -T fields -e tcp.seq` on
the same file (the reference: it must be at most twice as fast as we are).
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from producers.pcap import CaptureError, ReadStats, read_segments  # noqa: E402


def run_reader(path: str) -> tuple[float, float, ReadStats, int]:
    """Wall and CPU seconds, stats and payload bytes of one full read."""
    stats = ReadStats()
    t0, c0 = time.perf_counter(), time.process_time()
    payload = 0
    for seg in read_segments(path, stats=stats):
        payload += len(seg.payload)
    return time.perf_counter() - t0, time.process_time() - c0, stats, payload


def run_tshark(path: str) -> float | None:
    tshark = shutil.which("tshark")
    if tshark is None:
        return None
    cmd = [tshark, "-n", "-r", path, "-T", "fields", "-e", "tcp.seq", "-e", "tcp.len"]
    cmd += ["-o", "tcp.relative_sequence_numbers:FALSE"]
    t0 = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("capture")
    ap.add_argument("--repeat", type=int, default=3, help="runs; the best one counts")
    ap.add_argument("--no-tshark", action="store_true", help="skip the tshark reference")
    args = ap.parse_args(argv)
    try:
        runs = [run_reader(args.capture) for _ in range(max(1, args.repeat))]
    except CaptureError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    elapsed, cpu, stats, payload = min(runs, key=lambda r: r[0])
    pps = stats.packets / elapsed
    print(
        f"wiretide pcap: {stats.packets} packets, {stats.segments} segments, "
        f"{payload} payload bytes in {elapsed:.3f} s = {pps:,.0f} packets/s "
        f"({stats.segments / elapsed:,.0f} segments/s; "
        f"{stats.packets / max(cpu, 1e-9):,.0f} packets per CPU second)"
    )
    if stats.skipped:
        top = collections.Counter(stats.skipped).most_common()
        print("  skipped: " + ", ".join(f"{k}={v}" for k, v in top))
    if not args.no_tshark:
        t = run_tshark(args.capture)
        if t is None:
            print("tshark: not installed, no reference")
        else:
            ref = stats.packets / t
            print(
                f"tshark:        {ref:,.0f} packets/s ({t:.3f} s);"
                f" wiretide/tshark = {pps / ref:.2f}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
