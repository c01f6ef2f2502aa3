"""Run the pipeline's processes on this machine and tell when a replay is fully stored."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from confluent_kafka import Consumer, KafkaException, TopicPartition

from wiretide import config
from wiretide.errors import WiretideError


class PipelineError(WiretideError):
    """A pipeline process died or the pipeline stopped making progress."""


def spawn(
    role: str,
    bootstrap: str,
    data: Path,
    extra: list[str] | None = None,
    log_name: str | None = None,
) -> subprocess.Popen[bytes]:
    """Start `wiretide <role>` as a child process logging to the data dir."""
    env = dict(os.environ, WIRETIDE_KAFKA=bootstrap, WIRETIDE_DATA=str(data))
    log_dir = data / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    log = open(log_dir / f"{log_name or role}.log", "ab")
    return subprocess.Popen(
        [sys.executable, "-m", "wiretide", role, *(extra or [])],
        env=env,
        stdout=log,
        stderr=log,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # a terminal's Ctrl-C is the tap's to handle, not theirs
    )


def stop(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def group_lag(bootstrap: str, group: str, topic: str) -> int | None:
    """Messages of `topic` that `group` has not committed yet (all partitions); None while
    Kafka cannot tell (a coordinator moving or loading: ask again)."""
    consumer = Consumer(
        {
            **config.kafka_client(bootstrap),
            "group.id": group,
            "enable.auto.commit": False,
            "log_level": 3,
        }
    )
    try:
        md = consumer.list_topics(topic, timeout=10)
        parts = [TopicPartition(topic, p) for p in md.topics[topic].partitions]
        committed = consumer.committed(parts, timeout=10)
        lag = 0
        for tp in committed:
            low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, tp.partition), timeout=10
            )
            done = tp.offset if tp.offset >= 0 else low
            lag += max(0, high - done)
        return lag
    except KafkaException:
        return None
    finally:
        consumer.close()


def read_status(data: Path) -> dict[str, int]:
    try:
        return json.loads((data / "sink-status.json").read_text())
    except (OSError, ValueError):
        return {}


class Supervisor:
    """Keeps one process per role running, restarting a crashed one (as a pod would be)."""

    def __init__(
        self, bootstrap: str, data: Path, roles: dict[str, list[str]], max_restarts: int = 5
    ) -> None:
        """`roles` maps a process name (`worker-2`) to its extra arguments; the command
        is the name up to the first dash."""
        self.bootstrap, self.data, self.roles = bootstrap, data, roles
        self.max_restarts = max_restarts
        self.restarts = dict.fromkeys(roles, 0)
        self.procs = {role: self._spawn(role) for role in roles}

    def _spawn(self, role: str) -> subprocess.Popen[bytes]:
        return spawn(role.split("-")[0], self.bootstrap, self.data, self.roles[role], log_name=role)

    def check(self) -> None:
        for role, proc in self.procs.items():
            if proc.poll() is None:
                continue
            if self.restarts[role] >= self.max_restarts:
                raise PipelineError(
                    f"the {role} process keeps exiting (code {proc.returncode}); "
                    f"see {self.data / 'logs' / (role + '.log')}"
                )
            self.restarts[role] += 1
            self.procs[role] = self._spawn(role)

    def stop(self) -> None:
        """Stop every process at once (each flushes and commits on SIGTERM), then wait."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            stop(proc)


def wait_until_stored(
    bootstrap: str,
    supervisor: Supervisor,
    on_progress: Callable[[str, int], None] | None = None,
    stall_timeout: float = 120.0,
) -> None:
    """Block until workers committed every segment and the sink every call."""
    for group, topic, stage in (
        (config.STREAMS_GROUP, config.SEGMENTS_TOPIC, "dissecting"),
        (config.SINK_GROUP, config.CALLS_TOPIC, "storing"),
    ):
        last_lag, last_change = None, time.monotonic()
        while True:
            supervisor.check()
            lag = group_lag(bootstrap, group, topic)
            if lag is not None and on_progress:
                on_progress(stage, lag)
            if lag == 0:
                break
            if lag is not None and lag != last_lag:
                last_lag, last_change = lag, time.monotonic()
            elif time.monotonic() - last_change > stall_timeout:
                raise PipelineError(
                    f"{stage} made no progress for {stall_timeout:.0f}s "
                    f"({last_lag} messages left); see {supervisor.data / 'logs'}"
                )
            time.sleep(0.3)
