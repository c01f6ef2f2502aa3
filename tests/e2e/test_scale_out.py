"""Scale-out on one broker: two stream workers and two ClickHouse writers, as separate
processes in their consumer groups, over six partitions. They split the partitions, and
together store every call of a real load capture (nginx + wrk, made at test time) exactly
once - also when one worker is SIGKILLed mid-run and its partitions move to the other.

Each writer owns its own embedded chDB (one process per data dir), so each is a shard;
"exactly once" means no call is missing, none is in both shards, and none is stored
twice within one. The expected calls come from the sans-IO pipeline over the capture."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from schemas.config import Settings
from tests.conftest import ROOT, needs, pipeline_env, run_wiretide, stop_all
from tests.golden.protocols.dissect import capture_calls
from wiretide.local import group_lag

pytestmark = [needs("nginx"), needs("wrk"), needs("tcpdump"), pytest.mark.timeout(900)]

PARTITIONS = 6


def expected_ids(capture: Path) -> set[str]:
    return {c.call_id for c in capture_calls(capture)}


def start(role: str, env: dict[str, str], data: Path, *extra: str) -> subprocess.Popen:
    data.mkdir(parents=True, exist_ok=True)
    log = open(data / f"{role}.log", "ab")  # noqa: SIM115 - lives as long as the process
    return subprocess.Popen(
        [sys.executable, "-m", "wiretide", role, "--data", str(data), *extra],
        env=env, cwd=ROOT, stdout=log, stderr=log, start_new_session=True,
    )  # fmt: skip


def assignments(kafka: str, group: str, topic: str) -> list[list[int]]:
    """Partitions of `topic` per member of a consumer group, as its coordinator has them."""
    admin = AdminClient({"bootstrap.servers": kafka})
    desc = admin.describe_consumer_groups([group])[group].result(timeout=10)
    return sorted(
        sorted(tp.partition for tp in m.assignment.topic_partitions if tp.topic == topic)
        for m in desc.members
    )


def wait_split(kafka: str, group: str, topic: str, deadline: float) -> list[list[int]]:
    """The group's assignment once two members share the topic's partitions."""
    members: list[list[int]] = []
    while time.monotonic() < deadline:
        try:
            members = assignments(kafka, group, topic)
        except (KafkaException, TimeoutError):  # a new broker's coordinator, or a slow one
            time.sleep(0.5)
            continue
        if len(members) == 2 and all(members):
            break
        time.sleep(0.5)
    return members


def written(shards: list[Path]) -> int:
    total = 0
    for shard in shards:
        try:
            total += json.loads((shard / "sink-status.json").read_text()).get("written", 0)
        except (OSError, ValueError):
            pass
    return total


def stored_ids(env: dict[str, str], shard: Path) -> list[str]:
    out = run_wiretide(["query", "--json", "--data", str(shard)], env).stdout
    calls = [json.loads(line) for line in out.splitlines()]
    broken = [
        (c["id"], c["flags"], c["src"]["port"], c["timestamp_ns"]) for c in calls if c["flags"]
    ]
    assert broken == [], f"calls not seen whole in {shard.name}"
    return [c["id"] for c in calls]


def test_two_workers_and_two_writers_store_every_call_once_despite_a_killed_worker(
    load_capture: Path, kafka: str, tmp_path: Path
) -> None:
    env = dict(pipeline_env(kafka, tmp_path / "agent"), WIRETIDE_PARTITIONS=str(PARTITIONS))
    prefix = env["WIRETIDE_PREFIX"]
    want = expected_ids(load_capture)
    assert len(want) > 20000
    shards = [tmp_path / "writer-1", tmp_path / "writer-2"]
    procs = {}
    try:
        create = "from schemas.config import Settings; from schemas.runtime.topics import ensure_topics; ensure_topics(Settings.from_env())"  # noqa: E501
        subprocess.run([sys.executable, "-c", create], env=env, cwd=ROOT, check=True, timeout=60)
        # Writers first, settled: each is a shard, so a call partition that moved between
        # them while a worker replays would put the replayed copy in the other shard (a
        # ClickHouse cluster shards by call id and has no such window; see deploy/README.md).
        deadline = time.monotonic() + 120
        for shard in shards:
            procs[shard.name] = start("sink", env, shard, "--clickhouse", f"chdb://{shard}/chdb")
        writers = wait_split(kafka, prefix + "wiretide-sink", prefix + "wiretide.calls", deadline)
        for name in ("worker-1", "worker-2"):
            procs[name] = start("worker", env, tmp_path / name)
        split = wait_split(
            kafka, prefix + "wiretide-streams", prefix + "wiretide.segments", deadline
        )
        run_wiretide(["agent", "--pcap", str(load_capture)], env)
        # Both workers and both writers own a share of the six partitions.
        for members in (writers, split):
            assert len(members) == 2 and all(members), members
            assert sorted(sum(members, [])) == list(range(PARTITIONS))

        # Kill one worker once calls are being stored; the other takes its partitions.
        while written(shards) < len(want) // 5 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert written(shards) >= len(want) // 5, "calls were not being stored"
        procs["worker-1"].send_signal(signal.SIGKILL)
        procs["worker-1"].wait(30)

        # The survivor takes over all six partitions (the group notices the dead member
        # within its session timeout), then everything drains.
        deadline = time.monotonic() + 400
        segments = prefix + "wiretide.segments"
        while time.monotonic() < deadline:
            if assignments(kafka, prefix + "wiretide-streams", segments) == [
                list(range(PARTITIONS))
            ]:
                break
            time.sleep(0.5)
        while time.monotonic() < deadline:
            settings = Settings(kafka=kafka, prefix=prefix)
            lags = (
                group_lag(settings, settings.streams_group, settings.segments_topic),
                group_lag(settings, settings.sink_group, settings.calls_topic),
            )
            if lags == (0, 0):
                break
            time.sleep(1)
        assert lags == (0, 0), f"not drained: {lags}"
        writers = assignments(kafka, prefix + "wiretide-sink", prefix + "wiretide.calls")
        assert len(writers) == 2 and all(writers), writers
        assert assignments(kafka, prefix + "wiretide-streams", prefix + "wiretide.segments") == [
            list(range(PARTITIONS))
        ]
    finally:
        stop_all(procs.values())

    one, two = (stored_ids(env, shard) for shard in shards)
    assert one and two, "both writers stored calls"
    assert len(one) == len(set(one)) and len(two) == len(set(two))
    assert not set(one) & set(two), "a call stored by both writers"
    assert set(one) | set(two) == want
