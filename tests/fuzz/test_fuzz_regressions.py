"""Every finding the fuzzer pinned (tests/golden/fuzz/<protocol>/<hash>.json: the
minimized hostile flow, its port, and the stage and error it once caused) replayed alone
through the whole encode path into a real chDB: no stage breaks on it any more."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sinks.clickhouse import count_calls, open_store
from tests.fuzz.harness import check_alone, load_pinned, pinned_cases, run

CASES = pinned_cases()
# Findings in dissectors other engineers own, pinned until their fix lands.
OPEN: dict[str, str] = {}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory):
    data = Path(tmp_path_factory.mktemp("fuzz-pinned")) / "store"
    with open_store(f"chdb://{data}", ttl_days=0) as opened:
        yield opened


def _case(path: Path):
    marks = []
    if path.stem in OPEN:
        marks.append(pytest.mark.xfail(strict=True, reason=OPEN[path.stem]))
    return pytest.param(path, id=f"{path.parent.name}/{path.stem}", marks=marks)


@pytest.mark.parametrize("path", [_case(p) for p in CASES])
def test_pinned_finding_passes_every_stage(path: Path, store):
    body, flow = load_pinned(path)
    findings = check_alone(flow, store)
    assert not findings, f"was {body['stage']}: {body['error']}; now " + "; ".join(
        f"{f.stage}: {f.error}" for f in findings
    )


def test_pinned_files_are_well_formed_and_replay_real_bytes():
    for path in CASES:
        body, flow = load_pinned(path)
        assert {"stage", "error", "server_port", "transcript"} <= set(body), path
        assert flow.transcript.chunks, path
        assert json.loads(path.read_text())["transcript"]["name"].split("/")[0], path


def test_a_pinned_flow_is_stored(store):
    """The replay is the real path: a pinned MySQL flow's calls end up in the table."""
    path = next(p for p in CASES if p.parent.name == "mysql")
    _, flow = load_pinned(path)
    out = run([flow], store)
    assert out.stored and not out.findings
    assert count_calls(store) >= len(out.stored)
