#!/usr/bin/env python3
"""Fuzz Wiretide longer than CI does.

    python bench/fuzz.py --minutes N [--seed S] [--hostile 100] [--pin]
    python bench/fuzz.py --e2e [--hostile-flows 20000] [--good-calls 6000] [--seed S]

In-process (default): seeded rounds of the harness in tests/fuzz/harness.py (hostile
flows on every dissector port mixed with the golden flows, through Pipeline, Avro, Arrow
and a real chDB in a temp dir) from --seed on until N minutes are up; each new finding
signature is printed with its seed, and with --pin minimized into tests/golden/fuzz/.
Then 4 MiB floods of each protocol (zeros, 0xff, 0x7fffffff, text) with the bytes each
one kept and its rate. Exit status 1 when anything was found.

--e2e: a capture of --hostile-flows mutated flows over every supported port with the golden
flows repeated until they make --good-calls calls, replayed by `wiretide tap --pcap` with
a real broker (started here) into chDB; prints whether every good call is stored, whether
a stage restarted, the worker's peak RSS and the time. Exit status 1 when a check fails.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sinks.clickhouse import open_store  # noqa: E402
from tests.fuzz.corpus import seed_corpus  # noqa: E402
from tests.fuzz.harness import check_round, flood, minimize, pin, protocol_of  # noqa: E402

MIB = 1 << 20


def in_process(minutes: float, seed: int, hostile: int, pin_new: bool) -> int:
    found: dict[str, int] = {}
    rounds = flows = calls = 0
    deadline = time.monotonic() + minutes * 60
    with tempfile.TemporaryDirectory() as tmp, open_store(f"chdb://{tmp}/s", ttl_days=0) as store:
        while time.monotonic() < deadline:
            out = check_round(seed, hostile, store)
            rounds += 1
            flows += hostile
            calls += len(out.stored)
            for f in out.findings:
                if f.signature in found:
                    continue
                found[f.signature] = seed
                where = f.flow.transcript.name if f.flow else "-"
                print(f"seed {seed}: {f.signature} | {f.error} | from {where}", flush=True)
                if pin_new and f.flow is not None:
                    print(f"  pinned {pin(minimize(f, store))}", flush=True)
            seed += 1
    print(f"{rounds} rounds, {flows} hostile flows, {calls} calls stored, "
          f"{len(found)} distinct findings (seeds up to {seed - 1})")  # fmt: skip
    seeds = {}
    for t in seed_corpus():
        if t.transport == "tcp":
            seeds.setdefault(protocol_of(t), t)
    for protocol, t in sorted(seeds.items()):
        for fill in (b"\x00", b"\xff", b"\x7f\xff\xff\xff", b"A"):
            start = time.monotonic()
            result = flood(t, fill, 4 * MIB)
            rate = 4 / max(time.monotonic() - start, 1e-6)
            print(f"flood {protocol:10} {fill[:4]!r:20} held {result.held / MIB:5.2f} MiB "
                  f"peak {result.peak / MIB:5.2f} MiB  {result.failures:3} failures  "
                  f"{rate:7.1f} MiB/s")  # fmt: skip
    return 1 if found else 0


def end_to_end(hostile: int, good_calls: int, seed: int, keep: Path | None) -> int:
    import os

    from tests.fuzz.e2e import run_tap, stored_ids, write_capture
    from wiretide.broker import LocalBroker, free_port_pair

    tmp = Path(tempfile.mkdtemp(prefix="wiretide-fuzz-")) if keep is None else keep
    start = time.monotonic()
    capture = write_capture(tmp / "fuzz.pcap", hostile, good_calls, seed)
    print(f"capture: {capture.hostile_flows} hostile flows, {capture.good_flows} good flows "
          f"({len(capture.good_ids)} good calls), {capture.segments} segments, "
          f"{capture.path.stat().st_size / MIB:.0f} MiB, made in "
          f"{time.monotonic() - start:.0f} s")  # fmt: skip
    broker = LocalBroker(home=tmp / "kafka", port=free_port_pair())
    env = dict(
        os.environ,
        WIRETIDE_KAFKA=broker.start(),
        WIRETIDE_PREFIX=f"f{uuid.uuid4().hex[:8]}-",
        WIRETIDE_DATA=str(tmp / "data"),
        PYTHONUNBUFFERED="1",
    )
    try:
        tap = run_tap(capture.path, env)
    finally:
        broker.stop()
    stored = stored_ids(tmp / "data")
    missing = capture.good_ids - stored
    print(tap.output.strip())
    print(f"tap exit {tap.returncode} in {tap.seconds:.0f} s; {len(stored)} calls stored; "
          f"good calls stored {len(capture.good_ids) - len(missing)}/{len(capture.good_ids)}; "
          f"restarted: {'yes' if tap.restarted else 'no'}; "
          f"worker peak RSS {tap.worker_rss_max / MIB:.0f} MiB; files in {tmp}")  # fmt: skip
    return 0 if tap.returncode == 0 and not missing and not tap.restarted else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=1.0, help="in-process fuzzing time")
    ap.add_argument("--seed", type=int, default=0, help="first seed")
    ap.add_argument("--hostile", type=int, default=100, help="hostile flows per round")
    ap.add_argument("--pin", action="store_true", help="pin new findings in tests/golden/fuzz")
    ap.add_argument("--e2e", action="store_true", help="the end-to-end run instead")
    ap.add_argument("--hostile-flows", type=int, default=20_000)
    ap.add_argument("--good-calls", type=int, default=6_000)
    ap.add_argument("--keep", type=Path, help="e2e: work in this dir and keep it")
    args = ap.parse_args()
    if args.e2e:
        return end_to_end(args.hostile_flows, args.good_calls, args.seed, args.keep)
    return in_process(args.minutes, args.seed, args.hostile, args.pin)


if __name__ == "__main__":
    sys.exit(main())
