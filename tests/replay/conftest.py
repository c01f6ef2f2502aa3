"""What the replay comparison tests share: the v1/v2 test servers as processes, a real
recording of calls to v1 (tcpdump on loopback, read by the sans-IO pipeline), and a
small sender that replays recorded calls at a server and gives the Exchanges."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from schemas.records import ApiCall
from tests.conftest import ROOT
from tests.golden.protocols.dissect import capture_calls
from tests.golden.protocols.recording import tcpdump, wait_port
from tests.replay import servers
from wiretide.replay.model import Exchange, ReplayedResponse, SentRequest

HTTP_PATHS = [p.split(" ", 1)[1] for p in (*servers.UNCHANGED, *servers.CHANGED_IN_V2)]
GRPC_SKUS = ("a", "b", "missing")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def server(kind: str, version: str) -> Iterator[int]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.replay.servers", kind, str(port), version], cwd=ROOT
    )
    try:
        wait_port(port, 60)
        yield port
    finally:
        proc.terminate()
        proc.wait(30)


def grpc_get(port: int, sku: str) -> tuple[int, tuple[tuple[str, str], ...], bytes, int]:
    """(grpc status, metadata as headers, framed answer, latency ns) of one Get."""
    import grpc

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary(servers.GRPC_METHOD)
        start = time.perf_counter_ns()
        try:
            answer, info = call.with_call(servers.stock_request(sku), timeout=30)
            code, meta = 0, tuple(info.initial_metadata()) + tuple(info.trailing_metadata())
        except grpc.RpcError as ex:
            answer, code = b"", ex.code().value[0]
            meta = tuple(ex.initial_metadata()) + tuple(ex.trailing_metadata())
        took = time.perf_counter_ns() - start
    framed = b"\x00" + len(answer).to_bytes(4, "big") + answer if answer else b""
    headers = (("content-type", "application/grpc"), ("grpc-status", str(code)), *meta)
    return code, headers, framed, took


@dataclass(frozen=True)
class Recording:
    pcap: Path
    http_port: int  # where the v1 servers listened while recorded (gone since)
    grpc_port: int


@pytest.fixture(scope="session")
def v1_recording(tmp_path_factory: pytest.TempPathFactory) -> Recording:
    """Calls to the v1 servers, captured from loopback with tcpdump: every HTTP path
    twice, every gRPC sku once."""
    if shutil.which("tcpdump") is None:
        pytest.skip("tcpdump is not installed")
    pcap = tmp_path_factory.mktemp("replay") / "v1.pcap"
    with server("http", "v1") as http_port, server("grpc", "v1") as grpc_port:
        with tcpdump(pcap, f"tcp port {http_port} or tcp port {grpc_port}", drain=1.5):
            with httpx.Client(base_url=f"http://127.0.0.1:{http_port}") as client:
                for _ in range(2):
                    for path in HTTP_PATHS:
                        client.get(path)
            for sku in GRPC_SKUS:
                grpc_get(grpc_port, sku)
    return Recording(pcap, http_port, grpc_port)


@pytest.fixture(scope="session")
def recorded(v1_recording: Recording) -> list[ApiCall]:
    """The recording's calls as the pipeline stores them (redacted, bodies decoded)."""
    calls = capture_calls(v1_recording.pcap)
    assert len(calls) == 2 * len(HTTP_PATHS) + len(GRPC_SKUS), [c.path for c in calls]
    return sorted(calls, key=lambda c: c.ts_ns)


def replay(
    calls: list[ApiCall], http_port: int, grpc_port: int, run_id: str = "run-1", copy: int = 0
) -> list[Exchange]:
    """Each call sent again at the given servers, as the sender would report it."""
    out = []
    with httpx.Client(base_url=f"http://127.0.0.1:{http_port}", timeout=30) as client:
        for call in calls:
            sent_ns = time.time_ns()
            if call.protocol == "grpc":
                sku = json.loads(call.request_body)["1"]
                _, headers, body, took = grpc_get(grpc_port, sku)
                url = f"http://127.0.0.1:{grpc_port}{call.path}"
                request = SentRequest(
                    "POST", url, body=servers.stock_request(sku), http_version="2"
                )
                response = ReplayedResponse(200, headers, body, took)
            else:
                request = SentRequest(call.method, f"http://127.0.0.1:{http_port}{call.path}")
                start = time.perf_counter_ns()
                got = client.get(call.path)
                took = int(got.elapsed.total_seconds() * 1e9) or time.perf_counter_ns() - start
                headers = tuple(got.headers.multi_items())
                response = ReplayedResponse(got.status_code, headers, got.content, took)
            out.append(Exchange(run_id, call, copy, request, response, sent_ns=sent_ns))
    return out


@pytest.fixture(scope="session")
def v2_ports() -> Iterator[tuple[int, int]]:
    with server("http", "v2") as http_port, server("grpc", "v2") as grpc_port:
        yield http_port, grpc_port


@pytest.fixture(scope="session")
def v1_ports() -> Iterator[tuple[int, int]]:
    with server("http", "v1") as http_port, server("grpc", "v1") as grpc_port:
        yield http_port, grpc_port
