"""End to end for every protocol: all golden protocol captures (real clients and servers,
see tests/golden/protocols/) merged into one capture, replayed by `wiretide tap` through a
real broker into real chDB; `wiretide query --json <protocol>` returns each capture's
golden calls."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest

from tests.conftest import pipeline_env, run_wiretide
from tests.golden.protocols.dissect import expected_path, golden_cases

CASES = golden_cases()


def _expected_by_protocol() -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = defaultdict(list)
    for pcap in CASES:
        for call in json.loads(expected_path(pcap).read_text()):
            out[call["protocol"]].append(call)
    return out


EXPECTED = _expected_by_protocol()


@pytest.fixture(scope="module")
def stored(kafka: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    if shutil.which("mergecap") is None:
        pytest.skip("mergecap (tshark) is not installed")
    tmp = tmp_path_factory.mktemp("protocols")
    merged = tmp / "all.pcapng"
    subprocess.run(["mergecap", "-w", str(merged), *map(str, CASES)], check=True)
    env = pipeline_env(kafka, tmp / "data")
    proc = run_wiretide(["tap", "--quiet", "--pcap", str(merged)], env)
    assert "Traceback" not in proc.stdout + proc.stderr
    return env


@pytest.mark.parametrize("protocol", sorted(EXPECTED))
def test_query_returns_each_protocols_golden_calls(stored, protocol):
    proc = run_wiretide(["query", "--json", "--limit", "100000", protocol], stored)
    got = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    want = EXPECTED[protocol]
    key = lambda c: (c["timestamp_ns"], c["id"])  # noqa: E731
    assert sorted(got, key=key) == sorted(want, key=key)


def test_every_golden_case_has_an_expected_file():
    assert CASES, "no golden protocol captures"
    assert all(expected_path(p).exists() for p in CASES)
    assert all(p.stat().st_size < 2_000_000 for p in CASES), "keep golden captures small"
    assert Path(CASES[0]).parent.parent.name == "protocols"
