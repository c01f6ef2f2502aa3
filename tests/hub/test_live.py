"""The live tail over a real broker: calls published to the calls topic after the hub
says "ready" reach each WebSocket whose KFL filter takes them, and only those."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Producer
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from schemas.config import Settings
from schemas.records import ApiCall
from schemas.serde import encode_call_batch
from sinks.clickhouse.view import call_view
from tests.conftest import http_call, pipeline_env
from tests.hub.conftest import Hub, start_hub
from wiretide.hub.app import MAX_FILTER
from wiretide.hub.budget import BudgetLimits, stuck_message
from wiretide.hub.live import LiveError, LiveTail, Subscription

_T0 = time.time_ns()


def _call(n: int, path: str, status: int, method: str = "GET") -> ApiCall:
    ts = _T0 + n * 1_000_000
    return http_call(
        f"live-{n}",
        ts,
        src_ip="10.1.0.5",
        src_port=40000 + n,
        dst_ip="10.1.0.9",
        flow_id=f"flow-{n}",
        method=method,
        path=path,
        request_headers=(("Host", "svc"), ("X-Request-Id", f"r{n}")),
        status=status,
        reason="OK" if status < 400 else "Error",
        response_headers=(("Content-Type", "text/plain"),),
        response_body=f"body {n}".encode(),
        response_body_size=6,
        response_ts_ns=ts + 2_000_000,
    )


def _publish(env: dict[str, str], *calls: ApiCall) -> None:
    producer = Producer({"bootstrap.servers": env["WIRETIDE_KAFKA"]})
    topic = env["WIRETIDE_PREFIX"] + "wiretide.calls"
    producer.produce(topic, key=b"flow", value=encode_call_batch("flow", list(calls)))
    assert producer.flush(30) == 0


@contextlib.contextmanager
def _open(hub: Hub, kfl: str) -> Iterator[ClientConnection]:
    with connect(hub.url.replace("http", "ws") + "/api/live?" + _query(kfl)) as ws:
        assert json.loads(ws.recv(timeout=60)) == {"type": "ready"}
        yield ws


def _query(kfl: str) -> str:
    from urllib.parse import urlencode

    return urlencode({"q": kfl})


def _next_call(ws: ClientConnection) -> dict:
    message = json.loads(ws.recv(timeout=60))
    assert message["type"] == "call", message
    return message["call"]


def test_only_matching_calls_arrive_in_order(hub: Hub, stored_env: dict[str, str]) -> None:
    with _open(hub, 'response.status >= 400 and path.startsWith("/live")') as ws:
        _publish(stored_env, _call(1, "/live/a", 200), _call(2, "/live/b", 500))
        _publish(stored_env, _call(3, "/other", 503), _call(4, "/live/c", 404, "POST"))
        # Calls come in publishing order: had a non-matching one been sent, it would
        # arrive before the matching one that follows it.
        assert _next_call(ws)["id"] == "live-2"
        assert _next_call(ws)["id"] == "live-4"


def test_live_call_is_the_call_view(hub: Hub, stored_env: dict[str, str]) -> None:
    call = _call(5, "/live/shape", 201)
    with _open(hub, 'request.headers["x-request-id"] == "r5"') as ws:
        _publish(stored_env, _call(6, "/live/shape", 201), call)
        assert _next_call(ws) == call_view(call)


def test_each_socket_gets_its_own_filter(hub: Hub, stored_env: dict[str, str]) -> None:
    with (
        _open(hub, 'method == "POST" and path.startsWith("/two")') as posts,
        _open(hub, 'method == "GET" and path.startsWith("/two")') as gets,
    ):
        _publish(
            stored_env,
            _call(7, "/two/a", 200, "GET"),
            _call(8, "/two/b", 200, "POST"),
            _call(9, "/two/c", 200, "GET"),
        )
        assert _next_call(posts)["id"] == "live-8"
        assert [_next_call(gets)["id"], _next_call(gets)["id"]] == ["live-7", "live-9"]


def test_bad_filter_closes_with_the_error_first(hub: Hub) -> None:
    with connect(hub.url.replace("http", "ws") + "/api/live?" + _query("status >> 3")) as ws:
        message = json.loads(ws.recv(timeout=60))
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=60)
    assert message["type"] == "error" and (message["line"], message["column"]) == (1, 9)
    assert message["error"].startswith("1:9: ")
    assert closed.value.rcvd.code == 4400


def test_a_filter_longer_than_the_api_takes_is_refused_in_one_line(hub: Hub) -> None:
    kfl = "http or " * (MAX_FILTER // 8) + "http"
    with connect(hub.url.replace("http", "ws") + "/api/live?" + _query(kfl)) as ws:
        message = json.loads(ws.recv(timeout=60))
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=60)
    assert message == {"type": "error", "error": "q: the filter is longer than 10000 characters"}
    assert closed.value.rcvd.code == 4400


def test_an_evaluator_gone_silent_is_killed_and_its_subscriber_told(kafka: str) -> None:
    """Stopped, an evaluator is as silent as one stuck in a regex for ever."""
    limits = BudgetLimits(stuck_s=3.0)

    async def scenario() -> tuple[str, int | None]:
        tail = LiveTail(Settings(), lambda: kafka, limits=limits)
        sub = await tail.subscribe("http")
        try:
            os.kill(sub.evaluator.pid, signal.SIGSTOP)
            with pytest.raises(LiveError) as stopped:
                await asyncio.wait_for(sub.next(), 120)
            await asyncio.wait_for(sub.evaluator.wait(), 60)
            return str(stopped.value), sub.evaluator.returncode
        finally:
            await tail.close()

    why, code = asyncio.run(scenario())
    assert why == stuck_message(limits)
    assert why.startswith("live tail stopped: one evaluation of this filter ran for over 3 s;")
    assert code == -signal.SIGKILL


def test_live_views_beyond_the_most_a_hub_serves_are_refused(kafka: str) -> None:
    async def scenario() -> str:
        tail = LiveTail(Settings(), lambda: kafka, max_subscribers=1)
        try:
            first = await tail.subscribe("http")
            with pytest.raises(LiveError) as refused:
                await tail.subscribe("http")
            await tail.unsubscribe(first)
            await tail.unsubscribe(await tail.subscribe("http"))  # room again
            return str(refused.value)
        finally:
            await tail.close()

    assert asyncio.run(scenario()) == (
        "live tail: 1 live views are open, the most this hub serves; close one and try again"
    )


def test_a_slow_socket_is_told_how_many_calls_it_missed() -> None:
    async def scenario() -> tuple[list[str], int, int]:
        sub = Subscription(asyncio.get_running_loop(), size=2)
        for n in range(5):
            sub.offer(call_view(_call(n, f"/slow/{n}", 200)))
        got = [(await sub.next())["id"] for _ in range(2)]
        missed = sub.take_dropped()
        return got, missed, sub.take_dropped()

    got, missed, again = asyncio.run(scenario())
    assert got == ["live-0", "live-1"] and missed == 3 and again == 0


def test_a_tail_that_stops_ends_the_socket_even_when_it_is_behind() -> None:
    async def scenario() -> str:
        sub = Subscription(asyncio.get_running_loop(), size=1)
        sub.offer(call_view(_call(1, "/x", 200)))
        sub.offer(LiveError("live tail stopped: broker gone"))
        with pytest.raises(LiveError) as stopped:
            await sub.next()
        return str(stopped.value)

    assert asyncio.run(scenario()) == "live tail stopped: broker gone"


def test_ctrl_c_closes_open_sockets_and_exits_cleanly(kafka: str, tmp_path: Path) -> None:
    env = pipeline_env(kafka, tmp_path / "data")  # empty store; its own topics
    hub = start_hub(env)
    try:
        with _open(hub, "http") as ws:
            hub.proc.send_signal(signal.SIGINT)
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=60)
        hub.proc.wait(timeout=120)
    finally:
        stderr = hub.stop()
    assert closed.value.rcvd.code == 1012  # "service restart": the client may reconnect
    assert hub.proc.returncode == 0 and "Traceback" not in stderr
