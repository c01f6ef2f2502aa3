"""Redis commands replayed from the golden capture at a fresh redis-server: reads go by
default, writes wait for --allow-methods, and the replies come back in the form the
dissector stored them (so a replay of the same commands on a fresh server matches)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from tests.conftest import ROOT, needs, stop_all
from tests.golden.protocols.recording import wait_port
from tests.replay.send_kit import free_port
from tests.replay.test_send import send
from wiretide.replay.plan import Options, Skip, plan
from wiretide.replay.source import pcap_calls
from wiretide.replay.targets import parse_targets

PCAP = str(ROOT / "tests/golden/protocols/redis/basic.pcap")
WRITES = frozenset({"SET", "INCR", "LPUSH", "DEL", "CLIENT", "GET", "HEAD", "OPTIONS"})


@pytest.fixture
def redis_port() -> Iterator[int]:
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_port(port, 60)
        yield port
    finally:
        stop_all([proc])


def test_only_reads_go_unless_allowed() -> None:
    calls = pcap_calls(PCAP, "", None)
    targets = parse_targets(["redis://127.0.0.1:6390", "http://127.0.0.1:80"])
    planned = {c.method: plan(c, Options(targets)) for c in calls}
    assert not isinstance(planned["GET"], Skip)
    assert planned["GET"].url == "redis://127.0.0.1:6390"
    assert planned["SET"] == Skip("Redis SET is not a read", "give --allow-methods SET")
    http_only = plan(calls[0], Options(parse_targets(["http://127.0.0.1:80"])))
    assert http_only == Skip(
        "no --target for its destination (redis)", "add --target redis://HOST:PORT"
    )


@needs("redis-server")
def test_a_fresh_server_answers_as_the_recording_did(redis_port: int) -> None:
    """The capture's one-command connections (SET, GET, INCR twice, LPUSH on a string,
    DEL, GET) and PING/ECHO, sent one after another as recorded, get the recorded replies
    (errors included), in the stored JSON form."""
    calls = pcap_calls(PCAP, "", None)
    picked = [c for c in calls if sum(d.flow_id == c.flow_id for d in calls) == 1]
    picked = [c for c in picked if c.method != "PUBLISH"]
    picked += [c for c in calls if c.method in ("PING", "ECHO")]
    assert [c.method for c in picked] == [
        "SET", "GET", "INCR", "INCR", "LPUSH", "DEL", "GET", "PING", "ECHO"
    ]  # fmt: skip
    for call in picked:  # one at a time: each answer depends on the ones before
        (ex,) = send([call], f"redis://127.0.0.1:{redis_port}", allow_methods=WRITES)
        assert ex.error == "" and ex.response is not None
        replayed = (ex.response.status, ex.response.body)
        assert replayed == (call.status, call.response_body), call.method


def test_connection_state_commands_and_pushes_are_not_replayed() -> None:
    calls = pcap_calls(PCAP, "", None)
    targets = parse_targets(["redis://127.0.0.1:6390"])
    reasons = {c.method: plan(c, Options(targets, allow_methods=WRITES)) for c in calls}
    assert reasons["MULTI"] == Skip("Redis MULTI changes the connection's state (not replayed)")
    assert reasons["HELLO"] == Skip("Redis HELLO changes the connection's state (not replayed)")
    assert reasons["message"] == Skip("Redis server push (not a request)")
