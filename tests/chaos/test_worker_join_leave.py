"""A second stream worker joins mid-stream while eight keep-alive connections are open,
takes half the partitions, and leaves again (stopped, or killed); the store ends with
exactly the calls of a clean single-pipeline run of the same capture: none lost, none
twice, none that exists only in this run (a `no_request` half), each with the same id and
contents.

Worker-1 runs starved (stopped 90% of the time, as on a node with no CPU to spare) until
worker-2 has joined and stored its share: at full speed one worker stored all 30,000
calls before a second one could even join, and the test saw no join mid-stream."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from bench.chaos import compare
from schemas.config import Settings
from tests.conftest import ROOT, needs, pipeline_env, run_wiretide, stop_all
from tests.e2e.test_scale_out import assignments, start, written
from tests.golden.protocols.dissect import dissect_pcap
from wiretide.local import group_lag

pytestmark = [needs("nginx"), needs("wrk"), needs("tcpdump"), pytest.mark.timeout(900)]


def _wait(what: str, check, deadline: float) -> None:
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.2)


def _members(kafka: str, prefix: str) -> int:
    """Stream workers in the group (0 while the coordinator cannot tell yet)."""
    try:
        return len(assignments(kafka, prefix + "wiretide-streams", prefix + "wiretide.segments"))
    except Exception:  # the group is being created or rebalanced: ask again
        return 0


class Starve(threading.Thread):
    """Keeps a process stopped (SIGSTOP) `stopped_s` of every `period_s` until `done()`;
    short enough that its Kafka session and rebalances never time out."""

    def __init__(self, pid: int, period_s: float = 0.5, stopped_s: float = 0.45) -> None:
        super().__init__(daemon=True)
        self.pid, self.period_s, self.stopped_s = pid, period_s, stopped_s
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            os.kill(self.pid, signal.SIGSTOP)
            self._done.wait(self.stopped_s)
            os.kill(self.pid, signal.SIGCONT)
            self._done.wait(self.period_s - self.stopped_s)

    def done(self) -> None:
        self._done.set()
        self.join(5)
        os.kill(self.pid, signal.SIGCONT)


def _drained(kafka: str, prefix: str) -> bool:
    settings = Settings(kafka=kafka, prefix=prefix)
    return (
        group_lag(settings, settings.streams_group, settings.segments_topic),
        group_lag(settings, settings.sink_group, settings.calls_topic),
    ) == (0, 0)


@pytest.mark.parametrize("leave", ["SIGTERM", "SIGKILL"])
def test_a_worker_joining_and_leaving_mid_stream_changes_no_call(
    leave: str, load_capture: Path, kafka: str, tmp_path: Path
) -> None:
    env = pipeline_env(kafka, tmp_path / "data")
    prefix = env["WIRETIDE_PREFIX"]
    clean = dissect_pcap(load_capture)
    assert len(clean) > 20000
    store = tmp_path / "store"
    procs: dict[str, subprocess.Popen] = {}
    try:
        create = "from schemas.config import Settings; from schemas.runtime.topics import ensure_topics; ensure_topics(Settings.from_env())"  # noqa: E501
        subprocess.run([sys.executable, "-c", create], env=env, cwd=ROOT, check=True, timeout=60)
        deadline = time.monotonic() + 600
        procs["sink"] = start("sink", env, store)
        procs["worker-1"] = start("worker", env, tmp_path / "worker-1")
        _wait("worker-1 is in its group", lambda: _members(kafka, prefix) == 1, deadline)
        starve = Starve(procs["worker-1"].pid)
        starve.start()
        try:
            run_wiretide(["agent", "--pcap", str(load_capture)], env)
            _wait("calls are stored", lambda: written([store]) >= len(clean) // 10, deadline)
            procs["worker-2"] = start("worker", env, tmp_path / "worker-2")
            _wait("worker-2 joined", lambda: _members(kafka, prefix) == 2, deadline)
            joined_at = written([store])
            _wait("more calls are stored", lambda: written([store]) >= joined_at + 2000, deadline)
        finally:
            starve.done()
        procs["worker-2"].send_signal(getattr(signal, leave))
        procs["worker-2"].wait(60)
        _wait("everything is stored", lambda: _drained(kafka, prefix), deadline)
        assert joined_at < len(clean), "the capture was stored before worker-2 joined"
    finally:
        stop_all(procs.values())

    out = run_wiretide(["query", "--json", "--data", str(store)], env).stdout
    stored = [json.loads(line) for line in out.splitlines()]
    assert compare(clean, stored) == {"lost": [], "duplicated": [], "artefacts": [], "changed": []}
