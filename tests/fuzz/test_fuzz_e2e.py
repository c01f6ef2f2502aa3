"""The end-to-end fuzz run, CI size: hostile flows over every supported port mixed with
good golden calls, replayed by `wiretide tap --pcap` through a real broker into real chDB
(`bench/fuzz.py --e2e` runs the full 20,000 + 6,000)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import pipeline_env
from tests.fuzz.e2e import run_tap, stored_ids, write_capture

HOSTILE_FLOWS = 1500
GOOD_CALLS = 500
WORKER_RSS_BOUND = 400 << 20  # a worker at rest is about 90 MiB


@pytest.fixture(scope="module")
def tapped(kafka: str, tmp_path_factory: pytest.TempPathFactory):
    tmp = Path(tmp_path_factory.mktemp("fuzz-e2e"))
    capture = write_capture(tmp / "fuzz.pcap", HOSTILE_FLOWS, GOOD_CALLS, seed=1)
    tap = run_tap(capture.path, pipeline_env(kafka, tmp / "data"), timeout=900)
    return capture, tap, stored_ids(tmp / "data")


def test_the_tap_ends_cleanly_without_a_stage_restart(tapped):
    _, tap, _ = tapped
    assert tap.returncode == 0, tap.output
    assert "Traceback" not in tap.output
    assert not tap.restarted, tap.output


def test_every_good_call_is_stored_among_the_hostile_ones(tapped):
    capture, _, stored = tapped
    assert len(capture.good_ids) >= GOOD_CALLS
    assert capture.good_ids <= stored, f"{len(capture.good_ids - stored)} good calls missing"
    assert len(stored) > len(capture.good_ids)  # the hostile flows made calls too


def test_the_workers_memory_stays_bounded(tapped):
    _, tap, _ = tapped
    assert 0 < tap.worker_rss_max < WORKER_RSS_BOUND, tap.worker_rss_max
