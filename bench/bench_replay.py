"""Replay throughput against nginx on loopback, beside wrk on the same endpoints in the
same run: calls/s sent and answered, and CPU seconds (the sender's process, wrk's, and
nginx's each time), so the ratio holds on a busy machine.

    python bench/bench_replay.py [--calls 20000] [--connections 8] [--http2] [--diff]

The replayed calls are GETs of three nginx files (one a 404) on `--connections` recorded
connections; the replay sends them at `--speed max`, one lane per recorded connection (so
`--connections` requests in flight, as wrk's -c). `--diff` also compares every answer
with the recording (wiretide.replay.diff), as `wiretide replay` does.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.replay.send_kit import make_call, nginx  # noqa: E402
from wiretide.replay.engine import SendOptions, send_all  # noqa: E402
from wiretide.replay.pacing import Pacing  # noqa: E402
from wiretide.replay.plan import Options, plan  # noqa: E402
from wiretide.replay.targets import parse_targets  # noqa: E402

PATHS = ("/api/user.json", "/index.html", "/missing")
_TICK = os.sysconf("SC_CLK_TCK")


def proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime + stime


def nginx_cpu_s(tmp: Path) -> float:
    """CPU of nginx's master and workers so far."""
    master = int((tmp / "nginx.pid").read_text())
    total = proc_cpu_s(master)
    for child in Path(f"/proc/{master}/task/{master}/children").read_text().split():
        total += proc_cpu_s(int(child))
    return total


def replay_once(port: int, calls: int, conns: int, version: str, diff: bool) -> dict:
    recorded = [
        replace(make_call(n, path=PATHS[n % 3], conn=n % conns), request_version=version)
        for n in range(calls)
    ]
    targets = parse_targets([f"http://127.0.0.1:{port}"])
    requests = [plan(c, Options(targets, run_id="bench")) for c in recorded]
    compare = None
    if diff:
        from wiretide.replay.diff import compare

    def on_exchange(ex) -> None:
        if compare is not None:
            compare(ex)

    cpu0, t0 = time.process_time(), time.perf_counter()
    stats, _ = asyncio.run(
        send_all("bench", recorded, requests, Pacing(speed=None), on_exchange,
                 SendOptions(concurrency=conns))
    )  # fmt: skip
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return {"sent": stats.sent, "answered": stats.answered, "errors": stats.errors,
            "wall_s": wall, "cpu_s": cpu, "p50_ms": stats.percentile_ms(50)}  # fmt: skip


def wrk_once(port: int, calls_s: float, conns: int, tmp: Path) -> dict:
    script = tmp / "paths.lua"
    script.write_text(
        'local paths = {"' + '", "'.join(PATHS) + '"}\nlocal n = 0\n'
        "request = function()\n  n = n + 1\n"
        '  return wrk.format("GET", paths[(n - 1) % #paths + 1])\nend\n'
    )
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    out = subprocess.run(
        ["wrk", "-t1", f"-c{conns}", f"-d{calls_s:.0f}s", "-s", str(script),
         f"http://127.0.0.1:{port}/"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    requests = int(re.search(r"(\d+) requests in", out.stdout).group(1))
    return {"sent": requests, "wall_s": wall, "cpu_s": cpu}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=20000)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--http2", action="store_true", help="replay over h2c (wrk: HTTP/1.1)")
    ap.add_argument("--diff", action="store_true", help="compare each answer as well")
    ap.add_argument("--wrk-seconds", type=float, default=5.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-replay-") as tmp_name:
        tmp = Path(tmp_name)
        with nginx(tmp) as (h1, h2):
            port = h2 if args.http2 else h1
            version = "HTTP/2" if args.http2 else "HTTP/1.1"
            n0 = nginx_cpu_s(tmp)
            rep = replay_once(port, args.calls, args.connections, version, args.diff)
            n1 = nginx_cpu_s(tmp)
            wrk = wrk_once(h1, args.wrk_seconds, args.connections, tmp)
            n2 = nginx_cpu_s(tmp)
    rep_rate = rep["sent"] / rep["wall_s"]
    wrk_rate = wrk["sent"] / wrk["wall_s"]
    rep_us = rep["cpu_s"] / rep["sent"] * 1e6
    wrk_us = wrk["cpu_s"] / wrk["sent"] * 1e6
    print(f"replay ({version}{', diff' if args.diff else ''}, {args.connections} lanes): "
          f"{rep['sent']} sent, {rep['answered']} answered, {rep['errors']} errors in "
          f"{rep['wall_s']:.2f}s = {rep_rate:,.0f} calls/s; sender CPU {rep['cpu_s']:.2f}s "
          f"({rep_us:.0f} us/call), nginx CPU {n1 - n0:.2f}s, "
          f"p50 {rep['p50_ms']:.2f}ms")  # fmt: skip
    print(f"wrk (HTTP/1.1, -c{args.connections}): {wrk['sent']} in {wrk['wall_s']:.2f}s = "
          f"{wrk_rate:,.0f} calls/s; wrk CPU {wrk['cpu_s']:.2f}s ({wrk_us:.1f} us/call), "
          f"nginx CPU {n2 - n1:.2f}s")  # fmt: skip
    print(f"ratio: replay/wrk calls/s {rep_rate / wrk_rate:.3f}, "
          f"CPU per call {rep_us / wrk_us:.1f}x wrk's")  # fmt: skip


if __name__ == "__main__":
    main()
