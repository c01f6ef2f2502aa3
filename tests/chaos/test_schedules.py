"""Seeded chaos schedules (bench/chaos.py) over the load capture, two workers each: every
one ends with exactly the calls of a clean run. A failure names its seed; replay it with
`bench/chaos.py --seed N --pcap <capture>`."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.chaos import clean_run, run_schedule
from tests.conftest import needs

pytestmark = [needs("nginx"), needs("wrk"), needs("tcpdump"), pytest.mark.timeout(1800)]


@pytest.fixture(scope="module")
def clean(load_capture: Path) -> list[dict]:
    return clean_run(load_capture)


@pytest.mark.parametrize("seed", range(10))
def test_a_seeded_schedule_of_faults_changes_no_call(
    seed: int, load_capture: Path, clean: list[dict]
) -> None:
    outcome = run_schedule(seed, load_capture, clean, faults=4, workers=2)
    assert sum(outcome.injected.values()) == 4
    assert (outcome.lost, outcome.duplicated, outcome.artefacts, outcome.changed) == (0, 0, 0, 0), (
        f"seed {seed} ({dict(outcome.injected)}): replay with bench/chaos.py --seed {seed}"
    )
