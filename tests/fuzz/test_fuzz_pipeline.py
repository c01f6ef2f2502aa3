"""The fuzz harness in CI: a fixed number of seeded rounds (deterministic, ~2 CPU-minutes),
hostile flows on every port a dissector hints, mixed with every good golden flow, through
the Pipeline, Avro, Arrow and a real chDB insert. A failure names its signature and a
seed; `bench/fuzz.py --seed N --pin` writes its minimized reproducer to tests/golden/fuzz/."""

from __future__ import annotations

from pathlib import Path

import pytest

from sinks.clickhouse import count_calls, open_store
from streams.dissect.registry import default_registry
from tests.fuzz.corpus import seed_corpus
from tests.fuzz.harness import check_round, flood, protocol_of, unique

ROUNDS = 80
HOSTILE_PER_ROUND = 100
MIB = 1 << 20


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory):
    data = Path(tmp_path_factory.mktemp("fuzz")) / "store"
    with open_store(f"chdb://{data}", ttl_days=0) as opened:
        yield opened


# 8,000 hostile flows take ~110 CPU-s: on a busy CI machine (a quarter of a core) that is
# past the suite's 300 s default, so this test alone gets more.
@pytest.mark.timeout(900)
def test_hostile_flows_break_no_stage_and_leave_good_calls_as_a_clean_run_gives(store):
    findings, stored, protocols = [], set(), set()
    for seed in range(ROUNDS):
        out = check_round(seed, HOSTILE_PER_ROUND, store)
        findings += [(seed, f) for f in out.findings]
        stored |= out.stored
        protocols |= {c.protocol for calls in out.calls.values() for c in calls}
    report = [f"seed {seed}: {f.signature} | {f.error}" for seed, f in findings]
    assert not findings, "\n".join(report[:20])
    # Every call that went in is there (the table keeps one row per call id).
    assert count_calls(store) == len(stored)
    # The rounds reached every dissector, not only the opaque fallback.
    assert {f.protocol for f in default_registry().factories} <= protocols


def test_findings_have_distinct_signatures():
    """`unique` keeps one finding per signature: what a report or a pin is made of."""
    out = check_round(0, 5, None)
    assert len(unique([*out.findings, *out.findings])) == len(unique(out.findings))


FLOOD_SEEDS = {}
for _t in seed_corpus():
    if _t.transport == "tcp":
        FLOOD_SEEDS.setdefault(protocol_of(_t), _t)


@pytest.mark.parametrize("fill", [b"\x00", b"\xff", b"A", b"\x7f\xff\xff\xff"], ids=repr)
@pytest.mark.parametrize("protocol", sorted(FLOOD_SEEDS))
def test_a_flood_after_a_cut_message_holds_bounded_memory(protocol, fill):
    """4 MiB of one byte pattern (zeros: empty messages; 0xff / 0x7fffffff: absurd lengths;
    text: an endless line) after the start of a real flow: the pipeline holds a bounded
    amount, reports the junk a few times, and does not take a Python step per message it
    seems to hold (a run of zeros once cost Kafka and MySQL minutes per MiB)."""
    result = flood(FLOOD_SEEDS[protocol], fill, 4 * MIB)
    assert result.held < 1 * MIB, result
    assert result.peak < 3 * MIB, result
    assert result.failures <= 16, result
    assert result.steps < 4 * 100_000, result
