"""Seeded chaos schedules (bench/chaos.py) over the load capture, two workers each, faults
of every kind among them (workers, writer, producer, broker, a full or read-only store):
every one ends with exactly the calls of a clean run and nothing dead-lettered. A failure
names its seed; replay it with `bench/chaos.py --seed N --pcap <capture>`."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.chaos import clean_run, fault_kinds, plan, run_schedule
from tests.conftest import needs

pytestmark = [needs("nginx"), needs("wrk"), needs("tcpdump"), pytest.mark.timeout(1800)]


@pytest.fixture(scope="module")
def clean(load_capture: Path) -> list[dict]:
    return clean_run(load_capture)


SEEDS = range(10)


def test_the_seeds_of_ci_inject_every_kind_of_fault() -> None:
    injected = {fault for seed in SEEDS for _, fault in plan(seed, 4, fault_kinds())}
    assert injected == set(fault_kinds())


@pytest.mark.parametrize("seed", SEEDS)
def test_a_seeded_schedule_of_faults_changes_no_call(
    seed: int, load_capture: Path, clean: list[dict]
) -> None:
    outcome = run_schedule(seed, load_capture, clean, faults=4, workers=2)
    assert sum(outcome.injected.values()) == 4
    wrong = (outcome.lost, outcome.duplicated, outcome.artefacts, outcome.changed)
    assert (*wrong, outcome.dead_lettered) == (0, 0, 0, 0, 0), (
        f"seed {seed} ({dict(outcome.injected)}): replay with bench/chaos.py --seed {seed}"
    )
