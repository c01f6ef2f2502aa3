"""Sending against real servers: nginx over HTTP/1.1 and cleartext HTTP/2, a grpcio
server (the golden capture's calls, bodies re-encoded from the stored view), and what a
dead target gives."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from tests.conftest import ROOT, needs
from tests.replay.send_kit import (
    NGINX_FILES,
    access_log,
    free_port,
    grpc_server,
    http_server,
    make_call,
    nginx,
)
from wiretide.replay.engine import SendOptions, send_all
from wiretide.replay.model import Exchange
from wiretide.replay.pacing import Pacing
from wiretide.replay.plan import Options, plan
from wiretide.replay.source import pcap_calls
from wiretide.replay.targets import parse_targets


def send(calls, url: str, copies: int = 1, **kw) -> list[Exchange]:
    targets = parse_targets([url])
    requests = [plan(c, Options(targets, run_id="run-s", **kw)) for c in calls]
    got: list[Exchange] = []
    asyncio.run(
        send_all("run-s", calls, requests, Pacing(speed=None, copies=copies), got.append,
                 SendOptions(timeout_s=60))
    )  # fmt: skip
    return sorted(got, key=lambda ex: (ex.recorded.call_id, ex.copy))


@needs("nginx")
@pytest.mark.parametrize("version", ["HTTP/1.1", "HTTP/2"])
def test_nginx_answers_every_call_over_both_versions(tmp_path: Path, version: str) -> None:
    from dataclasses import replace

    paths = ["/api/user.json", "/index.html", "/missing"]
    calls = [replace(make_call(n, path=p, conn=n), request_version=version)
             for n, p in enumerate(paths)]  # fmt: skip
    calls.append(replace(make_call(3, "HEAD", "/index.html"), request_version=version))
    with nginx(tmp_path) as (h1, h2):
        port = h2 if version == "HTTP/2" else h1
        got = send(calls, f"http://127.0.0.1:{port}", copies=3)
    assert len(got) == 12 and all(ex.error == "" for ex in got)
    by_call = {ex.recorded.call_id: ex.response for ex in got}
    assert (
        by_call["call-0"].status == 200 and by_call["call-0"].body == NGINX_FILES["api/user.json"]
    )
    assert by_call["call-1"].body == NGINX_FILES["index.html"]
    assert by_call["call-2"].status == 404
    head = by_call["call-3"]
    assert head.status == 200 and head.body == b""
    assert dict(head.headers)["content-length"] == str(len(NGINX_FILES["index.html"]))
    assert all(ex.response.latency_ns > 0 for ex in got)
    lines = access_log(tmp_path)
    assert len(lines) == 12
    assert {line[2] for line in lines} == {"HTTP/2.0" if version == "HTTP/2" else "HTTP/1.1"}
    assert {line[3] for line in lines} == {"run-s"}


def test_a_dead_target_fails_each_call_with_the_reason() -> None:
    got = send([make_call(1), make_call(2, conn=1)], f"http://127.0.0.1:{free_port()}")
    assert [ex.response for ex in got] == [None, None]
    assert {ex.error for ex in got} == {"connection refused"}


def test_a_slow_answer_times_out_and_the_run_goes_on() -> None:
    calls = [make_call(1, path="/slow"), make_call(2, path="/fast", conn=1)]
    with http_server() as (port, log):
        targets = parse_targets([f"http://127.0.0.1:{port}"])
        requests = [plan(c, Options(targets)) for c in calls]
        got: list[Exchange] = []
        asyncio.run(
            send_all("r", calls, requests, Pacing(speed=None), got.append,
                     SendOptions(timeout_s=0.05))
        )  # fmt: skip
    errors = {ex.recorded.path: ex.error for ex in got}
    assert errors["/slow"] == "timeout"
    assert len(log) == 2


@pytest.mark.timeout(120)
def test_grpc_calls_of_the_golden_capture_reach_a_grpcio_server() -> None:
    """The capture's four calls (unary, server streaming, client streaming with gzip, an
    error), replayed from their stored JSON view: the server reads the same messages the
    recording client sent, and the answers carry grpc-status in trailers."""
    calls = pcap_calls(str(ROOT / "tests/golden/protocols/grpc/basic.pcap"), "", None)
    with grpc_server() as (port, log):
        got = send(calls, f"http://127.0.0.1:{port}")
    assert all(ex.error == "" for ex in got), [ex.error for ex in got]
    seen = {name: (messages, meta) for name, messages, meta in log}
    assert seen["Get"][0] == [{"1": "widget", "2": 42}]
    assert seen["Get"][1]["x-request-id"] == "req-1"
    assert seen["Get"][1]["x-wiretide-replay"] == "run-s"
    assert seen["List"][0] == [{"1": "bolt", "2": 3}]
    uploaded = seen["Upload"][0]
    assert [m["1"] for m in uploaded] == [5, 6, 7]
    assert uploaded[0]["2"] == "part 5 " * 40
    status = {
        ex.recorded.path.rsplit("/", 1)[1]: dict(ex.response.headers).get("grpc-status")
        for ex in got
    }
    assert status == {"Get": "0", "List": "0", "Upload": "0", "Fail": "3"}
    answers = {ex.recorded.path.rsplit("/", 1)[1]: ex.response.body for ex in got}
    assert answers["List"] == b"\x00\x00\x00\x00\x02\x08\x01\x00\x00\x00\x00\x02\x08\x02"


@needs("openssl")
def test_https_targets_check_certificates_unless_insecure(cert: tuple[str, str]) -> None:
    calls = [make_call(1, path="/tls")]
    with http_server(tls=cert) as (port, log):
        targets = parse_targets([f"https://127.0.0.1:{port}"])
        requests = [plan(c, Options(targets)) for c in calls]
        for insecure in (False, True):
            got: list[Exchange] = []
            asyncio.run(
                send_all("t", calls, requests, Pacing(speed=None), got.append,
                         SendOptions(timeout_s=60, insecure=insecure))
            )  # fmt: skip
            if insecure:
                assert got[0].response is not None and got[0].response.status == 200
            else:
                assert got[0].response is None
                assert got[0].error.startswith("TLS: ") and "--insecure" in got[0].error
    assert [s.path for s in log] == ["/tls"]


@needs("nginx")
def test_a_server_closing_every_few_requests_loses_no_call(tmp_path: Path) -> None:
    """nginx ends each connection after 5 requests (HTTP/1.1: Connection: close; HTTP/2:
    GOAWAY): the sender moves to a new connection and every call is answered once."""
    from dataclasses import replace

    with nginx(tmp_path, keepalive_requests=5) as (h1, h2):
        for version, port in (("HTTP/1.1", h1), ("HTTP/2", h2)):
            calls = [replace(make_call(n, path="/index.html", conn=n % 4), request_version=version)
                     for n in range(60)]  # fmt: skip
            got = send(calls, f"http://127.0.0.1:{port}")
            assert [ex.error for ex in got if ex.error] == [], version
            assert len(got) == 60 and {ex.response.status for ex in got} == {200}
    assert len(access_log(tmp_path)) == 120


def test_chunked_and_gzip_answers_come_back_decoded_on_a_kept_connection() -> None:
    paths = ["/chunked/1", "/gzip/1", "/chunked/2", "/gzip/2", "/plain"]
    calls = [make_call(n, path=p) for n, p in enumerate(paths)]  # one recorded connection
    with http_server() as (port, log):
        got = send(calls, f"http://127.0.0.1:{port}")
    assert [ex.error for ex in got] == [""] * 5
    for ex in got:
        assert json.loads(ex.response.body) == {"path": ex.recorded.path, "method": "GET"}
    assert len({s.client_port for s in log}) == 1  # the connection was kept throughout
