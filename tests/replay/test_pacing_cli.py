"""Pacing as a user drives it: a fixed rate looped for a duration, the progress line, and
Ctrl-C stopping a run cleanly with its summary."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import ROOT
from tests.replay.send_kit import http_server
from tests.replay.test_cli_replay import PCAP, SAFE_CALLS, marked, wiretide


def test_rate_loop_and_duration_bound_what_is_sent(tmp_path: Path) -> None:
    with http_server() as (port, log):
        out = wiretide(tmp_path, "--pcap", PCAP, "--target", f"http://127.0.0.1:{port}",
                       "--rate", "20/s", "--loop", "--duration", "3s", "--run-id", "rl",
                       "--learn", "0", "--progress", "--json")  # fmt: skip
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout.splitlines()[-1])
    sent = len(marked(log, "rl"))
    # 20/s for 3 s is at most 60 sends; more than one round of the capture's 12 means
    # it looped (a busy machine may send fewer, never more).
    assert summary["sent"] == sent and SAFE_CALLS < sent <= 60
    assert "replay: sent " in out.stderr and "answered" in out.stderr  # the progress line


def test_ctrl_c_stops_sending_and_still_sums_up(tmp_path: Path) -> None:
    env = {**os.environ, "WIRETIDE_DATA": str(tmp_path / "data")}
    with http_server() as (port, log):
        proc = subprocess.Popen(
            [sys.executable, "-m", "wiretide.cli", "replay", "--pcap", PCAP, "--target",
             f"http://127.0.0.1:{port}", "--rate", "10/s", "--loop", "--run-id", "cc",
             "--learn", "0"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT,
        )  # fmt: skip
        deadline = time.monotonic() + 120
        while not marked(log, "cc") and time.monotonic() < deadline:
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
        seen = len(marked(log, "cc"))
    assert proc.returncode == 0, err
    assert f"sent {seen}, answered {seen}, failed 0" in out
