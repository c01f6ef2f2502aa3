"""Shared fixtures: one real Kafka broker (KRaft) for the session, isolated per test by a
topic/group prefix, and a helper that runs the `wiretide` CLI as a user would."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Message
from hypothesis import settings

from schemas.records import ApiCall
from wiretide.broker import LocalBroker, free_port_pair

# CI replays the same examples every run (a new counterexample should be found on a
# developer's machine, not block a landing at random); no per-example deadline there.
settings.register_profile("ci", derandomize=True, deadline=None)
settings.register_profile("dev", deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden"


def _free_port_pair() -> int:
    """A free port and its neighbour, outside the ephemeral range (see free_port_pair)."""
    return free_port_pair()


def free_ports(n: int) -> list[int]:
    """`n` distinct free ports outside the ephemeral range, for a test's servers: fixed
    ports clash when two test runs share a machine."""
    ports: list[int] = []
    while len(ports) < n:
        port = free_port_pair()
        if port not in ports and port + 1 not in ports:
            ports += [port, port + 1]
    return ports[:n]


CHROMIUM = "/usr/bin/chromium"  # Debian's, driven by Playwright in the browser tests
ARTIFACTS = ROOT / "test-artifacts" / "ui"  # their screenshots


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """One headless Chromium per test module. Playwright's sync API allows one instance
    at a time, and while it runs it holds an asyncio loop on the main thread, so a later
    module's asyncio.run() fails: module scope stops it before the next module starts."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, request: pytest.FixtureRequest) -> Iterator[object]:  # noqa: ANN001
    """A fresh page in UTC; its screenshot is saved when the test ends, passed or not.
    An uncaught script error on the page fails the test."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, timezone_id="UTC")
    tab = context.new_page()
    tab.set_default_timeout(30_000)
    errors: list[str] = []
    tab.on("pageerror", lambda ex: errors.append(str(ex)))
    yield tab
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    name = re.sub(r"[^\w.-]+", "_", request.node.name)
    tab.screenshot(path=str(Path(ARTIFACTS, f"{name}.png")))
    context.close()
    assert not errors, f"script errors on the page: {errors}"


@pytest.fixture(scope="session")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A self-signed certificate and key for localhost and 127.0.0.1 (TLS servers in tests)."""
    d = tmp_path_factory.mktemp("cert")
    crt, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        + ["-keyout", str(key), "-out", str(crt), "-subj", "/CN=localhost"]
        + ["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True,
        capture_output=True,
    )
    return str(crt), str(key)


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Bootstrap address of a real one-node Kafka broker started for this test session."""
    broker = LocalBroker(home=tmp_path_factory.mktemp("kafka"), port=_free_port_pair())
    bootstrap = broker.start()
    yield bootstrap
    broker.stop()


def pipeline_env(kafka: str, data: Path) -> dict[str, str]:
    """Environment for `wiretide` processes with their own topics, groups and data dir."""
    return dict(
        os.environ,
        WIRETIDE_KAFKA=kafka,
        WIRETIDE_PREFIX=f"t{uuid.uuid4().hex[:8]}-",
        WIRETIDE_DATA=str(data),
        PYTHONUNBUFFERED="1",
    )


def env_with_endpoints(kafka: str, data: Path, endpoints: list) -> dict[str, str]:
    """pipeline_env whose endpoints topic already names `endpoints` (pods and services),
    as the cluster agent publishes them: the workers name the calls they make."""
    from confluent_kafka.admin import AdminClient, NewTopic

    from schemas.config import Settings
    from wiretide.kube.publish import EndpointPublisher

    env = pipeline_env(kafka, data)
    topic = env["WIRETIDE_PREFIX"] + "wiretide.endpoints"
    new = NewTopic(topic, 1, 1, config={"cleanup.policy": "compact"})
    admin = AdminClient({"bootstrap.servers": kafka})  # kept: its futures die with it
    admin.create_topics([new])[topic].result()
    assert EndpointPublisher(Settings(kafka=kafka), topic).sync(endpoints) == len(endpoints)
    return env


@pytest.fixture
def wt_env(kafka: str, tmp_path: Path) -> dict[str, str]:
    """A test's own pipeline environment on the session's broker."""
    return pipeline_env(kafka, tmp_path / "data")


def run_wiretide(
    args: list[str], env: dict[str, str], timeout: float = 300, check: bool = True
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "wiretide", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"wiretide {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


def needs(tool: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(shutil.which(tool) is None, reason=f"{tool} is not installed")


def stop_all(procs: Iterable[subprocess.Popen]) -> None:
    """SIGTERM every process still running, then reap each (SIGKILL after 60 s)."""
    procs = list(procs)
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()


def read_topic(
    bootstrap: str, topic: str, within: float = 20.0, settle: float = 0.5
) -> list[Message]:
    """Every message of `topic` from the start: stops once `settle` seconds pass without a
    message after some arrived, or after `within` seconds (an empty topic costs `within`)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": uuid.uuid4().hex,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([topic])
    got: list[Message] = []
    deadline, last = time.monotonic() + within, 0.0
    while time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and not msg.error():
            got.append(msg)
            last = time.monotonic()
        elif got and time.monotonic() - last >= settle:
            break
    consumer.close()
    return got


def http_call(call_id: str, ts_ns: int, **fields: object) -> ApiCall:
    """An answered HTTP/1.1 GET between two pod IPs; `fields` override any of it."""
    src_ip, src_port = fields.get("src_ip", "10.0.0.1"), fields.get("src_port", 40000)
    dst_ip, dst_port = fields.get("dst_ip", "10.0.0.2"), fields.get("dst_port", 8080)
    base: dict[str, object] = dict(
        call_id=call_id,
        protocol="http",
        ts_ns=ts_ns,
        src_ip=src_ip,
        src_port=src_port,
        dst_ip=dst_ip,
        dst_port=dst_port,
        flow_id=f"tcp:{src_ip}:{src_port}-{dst_ip}:{dst_port}",
        method="GET",
        path="/",
        request_version="HTTP/1.1",
        status=200,
        reason="OK",
        response_version="HTTP/1.1",
        response_headers=(("Content-Type", "application/json"),),
    )
    return ApiCall(**{**base, **fields})
