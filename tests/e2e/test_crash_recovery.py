"""A stream worker or the sink killed with SIGKILL mid-run loses no call and duplicates none.

The capture is real traffic made at test time (nginx loaded by wrk on loopback, recorded by
tcpdump through bench/make_capture.sh). The reference is the same capture tapped once with
no crash; the crashed run must store exactly the same calls, each once.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.conftest import ROOT, needs, pipeline_env, run_wiretide

pytestmark = [needs("nginx"), needs("wrk"), needs("tcpdump")]


@pytest.fixture(scope="module")
def capture(load_capture: Path) -> Path:
    return load_capture


def _stored(env: dict[str, str]) -> list[dict]:
    out = run_wiretide(["query", "--json", "http"], env).stdout
    return [json.loads(line) for line in out.splitlines()]


def _key(call: dict) -> tuple:
    return (
        call["timestamp_ns"],
        call["src"]["port"],
        call["request"]["method"],
        call["request"]["path"],
        call["request"]["query"],
        call["response"]["status"],
    )


@pytest.fixture(scope="module")
def reference(capture: Path, kafka: str, tmp_path_factory: pytest.TempPathFactory) -> list[tuple]:
    env = pipeline_env(kafka, tmp_path_factory.mktemp("ref"))
    run_wiretide(["tap", "--pcap", str(capture)], env)
    calls = _stored(env)
    assert len(calls) > 20000
    assert [c for c in calls if c["flags"]] == []  # a clean capture: every call complete
    return sorted(_key(c) for c in calls)


def _tap_and_kill(capture: Path, env: dict[str, str], role: str) -> str:
    """Run `wiretide tap`, SIGKILL its `role` child once calls are flowing, return tap's output."""
    data = Path(env["WIRETIDE_DATA"])
    tap = subprocess.Popen(
        [sys.executable, "-m", "wiretide", "tap", "--pcap", str(capture)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    killed = False
    deadline = time.monotonic() + 120
    while not killed and tap.poll() is None and time.monotonic() < deadline:
        try:
            written = json.loads((data / "sink-status.json").read_text()).get("written", 0)
        except (OSError, ValueError):
            written = 0
        if written > 0:
            for child in psutil.Process(tap.pid).children():
                if f"wiretide {role}" in " ".join(child.cmdline()):
                    child.send_signal(signal.SIGKILL)
                    killed = True
                    break
        time.sleep(0.05)
    out, err = tap.communicate(timeout=300)
    assert killed, f"the run ended before the {role} could be killed:\n{out}\n{err}"
    assert tap.returncode == 0, f"{out}\n{err}"
    return out


# The first case also makes the capture and the clean reference run (module fixtures), which
# on a machine at load 20+ takes longer than the suite's 300 s guard against hangs.
@pytest.mark.timeout(900)
@pytest.mark.parametrize("role", ["worker", "sink"])
def test_sigkill_mid_run_loses_and_duplicates_nothing(
    role: str, capture: Path, reference: list[tuple], wt_env: dict[str, str]
) -> None:
    out = _tap_and_kill(capture, wt_env, role)
    assert f"restarted after a crash: {role}" in out
    assert f"stored {len(reference)} calls" in out
    calls = _stored(wt_env)
    assert [c for c in calls if c["flags"]] == []
    assert len({c["id"] for c in calls}) == len(calls)
    assert sorted(_key(c) for c in calls) == reference
