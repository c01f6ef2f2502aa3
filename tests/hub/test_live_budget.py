"""Issue 11, "never stop, never leak": the hub lives in the writer's process (`wiretide
sink --serve`, as under `tap`), and no live-tail subscriber may stall it. With one
subscriber whose filter is a catastrophic regex, one whose filter is huge (expensive
with any regex engine), and one that never reads, every call is still stored,
/healthz answers throughout, a well-behaved subscriber gets its calls, the expensive
filters are stopped with one line saying why, and SIGTERM stops the sink."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import httpx
import pytest
from confluent_kafka import Producer
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from schemas.records import ApiCall
from schemas.runtime.sink_status import SinkStatus
from schemas.serde import encode_call_batch
from tests.conftest import pipeline_env
from tests.hub.test_live import _call, _query
from tests.hub.test_serve import make_topics, sink_log, start_sink, stop, wait_for_hub
from wiretide.hub.app import MAX_FILTER

pytestmark = pytest.mark.timeout(600)

# Exponential in a backtracking engine on "/aaa…a!"; the /ok calls match it either way.
CATASTROPHIC = 'request.path == r"(a+)+$" or path.startsWith("/ok")'
STUCK = "live tail stopped: one evaluation of this filter ran for over "
TOO_SLOW = "live tail stopped: this filter is too slow to evaluate ("


def huge_filter() -> str:
    """As many substring searches as a filter may hold: slow on a long path whatever
    the regex engine."""
    terms: list[str] = []
    while len(" or ".join(terms)) + 30 < MAX_FILTER:
        terms.append(f'path.contains("zq{len(terms):04d}")')
    return " or ".join(terms)


def the_calls() -> tuple[list[ApiCall], list[str]]:
    """Calls that hang a backtracking regex, long ones, then the /ok ones (their ids)."""
    hanging = [_call(n, "/" + "a" * 40 + "!", 200) for n in range(3)]
    long = [_call(1000 + n, "/big/" + "b" * 600_000, 200) for n in range(150)]
    ok = [_call(2000 + n, f"/ok/{n}", 200) for n in range(5)]
    return [*hanging, *long, *ok], [c.call_id for c in ok]


def publish(env: dict[str, str], calls: list[ApiCall]) -> None:
    producer = Producer({"bootstrap.servers": env["WIRETIDE_KAFKA"]})
    topic = env["WIRETIDE_PREFIX"] + "wiretide.calls"
    for call in calls:  # one call per message: the long ones are 600 kB each
        producer.produce(topic, key=b"flow", value=encode_call_batch("flow", [call]))
        producer.poll(0)
    assert producer.flush(60) == 0


def messages(ws: ClientConnection, timeout: float = 120) -> list[dict]:
    """What the hub sends until it closes the socket."""
    got = []
    try:
        while True:
            got.append(json.loads(ws.recv(timeout=timeout)))
    except ConnectionClosed:
        return got


def test_no_live_subscriber_stalls_storage_health_or_sigterm(kafka: str, tmp_path: Path) -> None:
    env = pipeline_env(kafka, tmp_path / "data")
    data = Path(env["WIRETIDE_DATA"])
    data.mkdir(parents=True)
    make_topics(env)
    calls, ok_ids = the_calls()
    sink = start_sink(env, "--serve", "127.0.0.1:0")
    try:
        hub = wait_for_hub(env, sink)
        live = hub.url.replace("http", "ws") + "/api/live?"
        with (
            connect(live + _query(CATASTROPHIC), max_size=None) as catastrophic,
            connect(live + _query(huge_filter()), max_size=None) as huge,
            # stops reading the network after one message (and so answers no pings)
            connect(live + _query("http"), max_queue=1, ping_interval=None) as never_reads,
            connect(live + _query('path.startsWith("/ok")'), max_size=None) as well_behaved,
        ):
            for ws in (catastrophic, huge, never_reads, well_behaved):
                assert json.loads(ws.recv(timeout=60)) == {"type": "ready"}

            health: list[int | str] = []
            storing = threading.Event()
            storing.set()

            def ask_health() -> None:
                with httpx.Client(base_url=hub.url, timeout=30) as client:
                    while storing.is_set():
                        try:
                            health.append(client.get("/healthz").status_code)
                        except httpx.HTTPError as ex:
                            health.append(repr(ex))
                        storing.wait(0.2)

            asker = threading.Thread(target=ask_health)
            asker.start()
            try:
                publish(env, calls)
                while SinkStatus.read(data).written < len(calls):
                    assert sink.poll() is None, sink_log(env)
                    storing.wait(0.2)
                got = [json.loads(well_behaved.recv(timeout=120)) for _ in ok_ids]
            finally:
                storing.clear()
                asker.join()
            assert health and set(health) == {200}, sorted(set(map(str, health)))
            assert [m["call"]["id"] for m in got] == ok_ids

            # The huge filter overdraws its budget (or, on a backtracking engine's bad
            # day, is caught stuck): told in one line, and its socket closes.
            said = messages(huge)
            assert said[-1]["type"] == "error", said[-1]
            assert said[-1]["error"].startswith((TOO_SLOW, STUCK)), said[-1]
            assert "\n" not in said[-1]["error"]
            # The catastrophic regex is either stuck and killed (backtracking `re`) or
            # fast (RE2) and then takes the /ok calls like anyone.
            first = json.loads(catastrophic.recv(timeout=120))
            if first["type"] == "error":
                assert first["error"].startswith(STUCK), first
            else:
                rest = [json.loads(catastrophic.recv(timeout=60)) for _ in ok_ids[1:]]
                assert [m["call"]["id"] for m in (first, *rest)] == ok_ids
    finally:
        code = stop(sink)
    log = sink_log(env)
    assert code == 0, log
    assert "Traceback" not in log
    status = json.loads((data / "sink-status.json").read_text())
    assert status["stored_after"] == len(calls)
