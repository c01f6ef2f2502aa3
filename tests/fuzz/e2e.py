"""The end-to-end fuzz run: a capture of hostile flows over every supported port mixed
with good calls (the golden flows, unmutated), replayed by `wiretide tap --pcap` through
a real broker into real chDB. What it checks: every good call is stored, no stage was
restarted, and the worker's resident memory stayed bounded."""

from __future__ import annotations

import random
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import psutil

from producers.pcap_writer import capture_file
from sinks.clickhouse import open_store
from sinks.clickhouse.ddl import CALLS
from tests.fuzz.corpus import ROOT, seed_corpus
from tests.fuzz.harness import Placed, hostile_flows, ports, run

MAX_CHUNKS = 48  # segments of one hostile flow: 1-byte resegmenting would swamp the capture


@dataclass(frozen=True, slots=True)
class Capture:
    path: Path
    hostile_flows: int
    good_flows: int
    good_ids: frozenset[str]  # the calls of the good flows, as a clean run makes them
    segments: int


def write_capture(path: Path, hostile: int, good_calls: int, seed: int = 0) -> Capture:
    """`hostile` mutated flows (ports drawn from every dissector's hints, in turn) and
    golden flows repeated until they make at least `good_calls` calls, interleaved."""
    corpus = seed_corpus()
    rng = random.Random(seed)
    ts0 = time.time_ns() - 3600 * 10**9  # within the store's retention
    good: list[Placed] = []
    good_ids: set[str] = set()
    n = 0
    while len(good_ids) < good_calls:
        t = corpus[n % len(corpus)]
        ip = f"10.7.{n // 250 % 250}.{n % 250 + 1}"
        flow = Placed(t, 20_000 + n % 30_000, t.server_port, ts0 + n * 997_000, True, ip)
        good_ids |= {c.call_id for calls in run([flow], None).calls.values() for c in calls}
        good.append(flow)
        n += 1
    bad = hostile_flows(rng, corpus, hostile, 0, ts0 + 500_000)
    pools = {"tcp": ports("tcp"), "udp": ports("udp")}
    placed = []
    for k, f in enumerate(bad):
        pool = pools[f.transcript.transport]
        ip = f"10.6.{k // 250 % 250}.{k % 250 + 1}"
        t = replace(f.transcript, chunks=f.transcript.chunks[:MAX_CHUNKS])
        placed.append(replace(f, transcript=t, client_ip=ip, client_port=30_000 + k % 30_000,
                              ts0=ts0 + k * 331_000, server_port=pool[k % len(pool)]))  # fmt: skip
    bad = placed
    segs = [s for f in [*good, *bad] for s in f.segments()]
    with open(path, "wb") as out:
        out.writelines(capture_file(segs))
    return Capture(path, len(bad), len(good), frozenset(good_ids), len(segs))


@dataclass(frozen=True, slots=True)
class TapRun:
    returncode: int
    output: str
    seconds: float
    worker_rss_max: int  # bytes: the worker's peak RSS (VmHWM), read every half second
    restarted: bool


def run_tap(pcap: Path, env: dict[str, str], timeout: float = 3600) -> TapRun:
    """`wiretide tap --quiet --pcap` to its end, sampling its worker's RSS meanwhile."""
    start = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "wiretide", "tap", "--quiet", "--pcap", str(pcap)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    rss = 0
    parent = psutil.Process(proc.pid)
    while proc.poll() is None:
        if time.monotonic() - start > timeout:
            proc.kill()
            break
        try:
            for child in parent.children(recursive=True):
                try:
                    if "worker" in child.cmdline():
                        rss = max(rss, _peak_rss(child.pid))
                except psutil.Error:
                    pass
        except psutil.Error:
            pass
        time.sleep(0.5)
    output = proc.communicate()[0]
    seconds = time.monotonic() - start
    restarted = "restarted after a crash" in output
    return TapRun(proc.returncode, output, seconds, rss, restarted)


def _peak_rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def stored_ids(data: Path) -> set[str]:
    with open_store(f"chdb://{data / 'chdb'}", ttl_days=None) as store:
        rows = store.client.query(f"SELECT DISTINCT call_id FROM {CALLS}").result_rows
    return {r[0] for r in rows}
