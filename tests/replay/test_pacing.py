"""Pacing: the schedule (speed, rate, copies, ramp, loop), and against a real server that
copies multiply the calls exactly and each recorded connection's order holds."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from tests.replay.send_kit import SLOW_S, http_server, make_call
from wiretide.replay.engine import SendOptions, send_all
from wiretide.replay.pacing import Pacing, parse_rate, parse_speed, ramped, schedule
from wiretide.replay.plan import Options, plan
from wiretide.replay.targets import ReplayError, parse_targets

SECOND = 10**9


def test_speed_keeps_recorded_gaps_scaled() -> None:
    ts = [0, SECOND, 3 * SECOND]
    slots = list(schedule(ts, ["a", "a", "b"], Pacing(speed=2.0)))
    assert [s.due_s for s in slots] == [0.0, 0.5, 1.5]
    assert [s.lane for s in slots] == [("a", 0), ("a", 0), ("b", 0)]
    assert {s.due_s for s in schedule(ts, ["a"] * 3, Pacing(speed=None))} == {0.0}


def test_copies_are_due_together_on_lanes_of_their_own() -> None:
    slots = list(schedule([0, SECOND], ["a", "b"], Pacing(speed=1.0, copies=3)))
    assert len(slots) == 6
    assert [(s.index, s.copy, s.due_s) for s in slots[:3]] == [
        (0, 0, 0.0),
        (0, 1, 0.0),
        (0, 2, 0.0),
    ]
    assert {s.lane for s in slots} == {(f, c) for f in "ab" for c in range(3)}


def test_rate_spaces_every_send_evenly() -> None:
    slots = list(schedule([0, 5 * SECOND, 6 * SECOND], ["a", "b", "c"], Pacing(rate=4.0)))
    assert [s.due_s for s in slots] == [0.0, 0.25, 0.5]


def test_ramp_grows_the_pace_from_zero() -> None:
    # Full pace 10/s after a 10 s ramp: the 25th send (2.5 s at full pace) comes at
    # sqrt(2 * 2.5 * 10) = 7.07 s, the 100th (10 s at full pace) at 15 s.
    assert ramped(2.5, 10) == pytest.approx(7.071, abs=1e-3)
    assert ramped(10, 10) == 15
    slots = list(schedule([0] * 101, ["a"] * 101, Pacing(rate=10.0, ramp_s=10.0)))
    dues = [s.due_s for s in slots]
    assert dues == sorted(dues) and dues[100] == pytest.approx(15.0)
    gaps = [b - a for a, b in itertools.pairwise(dues)]
    assert gaps[1] > gaps[40] > gaps[90] == pytest.approx(0.1)


def test_loop_starts_again_after_the_last_call() -> None:
    slots = list(itertools.islice(schedule([0, SECOND], ["a", "b"], Pacing(loop=True)), 6))
    assert [s.round for s in slots] == [0, 0, 1, 1, 2, 2]
    assert [s.due_s for s in slots] == [0.0, 1.0, 1.5, 2.5, 3.0, 4.0]


@pytest.mark.parametrize("text", ["fast", "0x", "-1x", "inf"])
def test_bad_speeds_are_one_line_errors(text: str) -> None:
    with pytest.raises(ReplayError, match="--speed: expected 1x, 2x, 0.5x or max"):
        parse_speed(text)


def test_rates_and_speeds_parse() -> None:
    assert parse_speed("2x") == 2.0 and parse_speed("max") is None and parse_speed("0.5") == 0.5
    assert parse_rate("100/s") == 100.0
    with pytest.raises(ReplayError, match="--rate"):
        parse_rate("lots")


def _send(calls, port: int, pacing: Pacing, concurrency: int = 32):
    targets = parse_targets([f"http://127.0.0.1:{port}"])
    requests = [plan(c, Options(targets, run_id="run-p")) for c in calls]
    got = []
    stats, _ = asyncio.run(
        send_all("run-p", calls, requests, pacing, got.append, SendOptions(concurrency=concurrency))
    )
    return stats, got


def test_copies_at_max_speed_send_exactly_n_times_each_call() -> None:
    calls = [make_call(n, path=f"/c/{n}", conn=n % 3) for n in range(20)]
    with http_server() as (port, log):
        stats, got = _send(calls, port, Pacing(speed=None, copies=5))
    assert stats.sent == stats.answered == len(got) == len(log) == 100
    for n in range(20):
        assert sum(1 for s in log if s.path == f"/c/{n}") == 5
    assert sorted((ex.recorded.call_id, ex.copy) for ex in got) == sorted(
        (f"call-{n}", c) for n in range(20) for c in range(5)
    )
    assert {s.headers["x-wiretide-replay"] for s in log} == {"run-p"}


def test_each_recorded_connection_keeps_its_order() -> None:
    """Connection A's first call is slow: at any pace, A's later calls wait for it, while
    connection B's calls go on meanwhile."""
    a = [make_call(k, path=f"/a{k}" + ("-slow" if k == 0 else ""), conn=1) for k in range(3)]
    b = [make_call(10 + k, path=f"/b{k}", conn=2) for k in range(3)]
    calls = sorted(a + b, key=lambda c: c.ts_ns)
    with http_server() as (port, log):
        stats, _ = _send(calls, port, Pacing(speed=None, copies=4))
    assert stats.answered == 24
    order = [s.path for s in log]
    for prefix in ("/a", "/b"):
        seen = [p.split("-")[0] for p in order if p.startswith(prefix)]
        counts = [0, 0, 0]
        for path in seen:  # per copy, k comes after k-1: counts never increase along k
            counts[int(path[-1])] += 1
            assert counts[0] >= counts[1] >= counts[2], seen
    # B did not wait behind A's slow first call.
    assert any(p.startswith("/b") for p in order[: order.index("/a1")])
    assert max(s.at for s in log) - min(s.at for s in log) >= SLOW_S * 0.9


def test_recorded_timing_is_kept_at_speed() -> None:
    """Calls recorded 400 ms apart, at 2x: the last is not sent before 800 ms / 2 from the
    start (a lower bound only: a busy machine may be late, never early)."""
    calls = [make_call(n, path=f"/t/{n}", conn=n, ts_ms=400 * n) for n in range(3)]
    with http_server() as (port, log):
        targets = parse_targets([f"http://127.0.0.1:{port}"])
        requests = [plan(c, Options(targets)) for c in calls]
        got: list = []
        _, elapsed = asyncio.run(
            send_all("r", calls, requests, Pacing(speed=2.0), got.append, SendOptions())
        )
    assert elapsed >= 0.4 and sorted(s.path for s in log) == ["/t/0", "/t/1", "/t/2"]
    sent = {ex.recorded.path: ex.sent_ns for ex in got}
    assert sent["/t/0"] < sent["/t/1"] < sent["/t/2"]  # due times apart: dispatched in order
