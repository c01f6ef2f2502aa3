"""A tap on a data dir of its own gets a broker of its own, even when the default port
is held by another data dir's broker, and says what it leaves running."""

from __future__ import annotations

import os
import re

from tests.conftest import GOLDEN, run_wiretide

PCAP = GOLDEN / "e2e" / "http_basic.pcap"
STORED = (
    r"^stored (\d+) calls in [0-9.]+s \(\d+ calls/s, "
    r"from the first segment published to the last call stored\)$"
)


def test_a_second_data_dir_gets_its_own_broker_and_the_tap_says_so(kafka: str, tmp_path) -> None:
    taken = kafka.rsplit(":", 1)[1]  # the session's broker stands for the first tap's
    data = tmp_path / "second"
    env = {k: v for k, v in os.environ.items() if not k.startswith("WIRETIDE_")}
    env.update(WIRETIDE_KAFKA_PORT=taken, WIRETIDE_PREFIX="second-", HOME=str(tmp_path))
    try:
        tap = run_wiretide(["tap", "--pcap", str(PCAP), "--no-ui", "--data", str(data)], env)
        stored = re.search(STORED, tap.stdout, re.MULTILINE)
        assert stored and int(stored.group(1)) > 0, tap.stdout
        left = re.search(r"left running: the Kafka broker at 127\.0\.0\.1:(\d+) ", tap.stderr)
        assert left and left.group(1) != taken, tap.stderr
        assert f"stop it with: wiretide broker stop --data {data}" in tap.stderr
        status = run_wiretide(["broker", "status", "--data", str(data)], env)
        assert f"up at 127.0.0.1:{left.group(1)}" in status.stdout
        again = run_wiretide(["tap", "--pcap", str(PCAP), "--no-ui", "--data", str(data)], env)
        assert f"127.0.0.1:{left.group(1)}" in again.stderr  # the same broker, reused
    finally:
        run_wiretide(["broker", "stop", "--data", str(data)], env, check=False)
    status = run_wiretide(["broker", "status", "--data", str(data)], env, check=False)
    assert status.returncode == 1 and "not running" in status.stdout
