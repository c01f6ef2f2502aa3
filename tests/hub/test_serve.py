"""`wiretide sink --serve`: the ClickHouse writer and the hub in one process, on one open
embedded store (chDB lets one process own a data dir). Calls keep being stored while
the API answers, inserts and reads taking turns; the hub advertises itself in
`<data>/hub.json` (mode 0600) while it runs, and `wiretide query` goes through it."""

from __future__ import annotations

import dataclasses
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from confluent_kafka import Producer

from schemas.records import ApiCall
from schemas.runtime.sink_status import SinkStatus
from schemas.serde import encode_call_batch
from tests.conftest import ROOT, pipeline_env, run_wiretide
from tests.golden.protocols.dissect import capture_calls
from tests.hub.conftest import PCAP
from wiretide.hub.client import advert, find_hub

pytestmark = pytest.mark.timeout(600)
BATCHES, PER_BATCH = 40, 250


def real_calls() -> list[ApiCall]:
    """The calls of the golden HTTP capture, dissected in-process."""
    calls = capture_calls(PCAP)
    assert calls
    return calls


def many_calls(base: list[ApiCall], n: int) -> Iterator[ApiCall]:
    """`n` distinct calls: the real ones again and again, each copy with its own id and time."""
    for i in range(n):
        call = base[i % len(base)]
        yield dataclasses.replace(call, call_id=f"{i:08d}{call.call_id[8:]}", ts_ns=call.ts_ns + i)


def start_sink(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    log = open(Path(env["WIRETIDE_DATA"]).parent / "sink.log", "w+")  # noqa: SIM115
    return subprocess.Popen(
        [sys.executable, "-m", "wiretide", "sink", *args], env=env, cwd=ROOT,
        stdout=log, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def wait_for_hub(env: dict[str, str], proc: subprocess.Popen[str]):  # noqa: ANN201
    data = Path(env["WIRETIDE_DATA"])
    while (hub := find_hub(data)) is None:
        assert proc.poll() is None, sink_log(env)
        time.sleep(0.1)
    return hub


def sink_log(env: dict[str, str]) -> str:
    return (Path(env["WIRETIDE_DATA"]).parent / "sink.log").read_text()


def stop(proc: subprocess.Popen[str]) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=120)


def make_topics(env: dict[str, str]) -> None:
    code = "from schemas.config import Settings; from schemas.runtime.topics import ensure_topics; ensure_topics(Settings.from_env())"  # noqa: E501
    subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, check=True, timeout=120)


def test_calls_are_stored_while_the_api_answers(kafka: str, tmp_path: Path) -> None:
    env = pipeline_env(kafka, tmp_path / "data")
    Path(env["WIRETIDE_DATA"]).mkdir(parents=True)
    make_topics(env)
    sink = start_sink(env, "--serve", "127.0.0.1:0")
    try:
        hub = wait_for_hub(env, sink)
        advert = Path(env["WIRETIDE_DATA"]) / "hub.json"
        assert advert.stat().st_mode & 0o777 == 0o600
        assert json.loads(advert.read_text())["pid"] == sink.pid

        # Readers hammer the API the whole time the calls are being published and stored.
        answers: list[int] = []
        publishing = threading.Event()
        publishing.set()

        def read_all_the_time() -> None:
            with httpx.Client(base_url=hub.url, timeout=60) as client:
                while publishing.is_set():
                    answers.append(client.get("/api/calls", params={"limit": 50}).status_code)
                    answers.append(client.get("/readyz").status_code)

        readers = [threading.Thread(target=read_all_the_time) for _ in range(3)]
        for t in readers:
            t.start()
        topic = env["WIRETIDE_PREFIX"] + "wiretide.calls"
        producer = Producer({"bootstrap.servers": kafka, "linger.ms": 5})
        calls = list(many_calls(real_calls(), BATCHES * PER_BATCH))
        for b in range(BATCHES):
            batch = calls[b * PER_BATCH : (b + 1) * PER_BATCH]
            producer.produce(topic, key=f"f{b}".encode(), value=encode_call_batch(f"f{b}", batch))
            producer.poll(0)
            time.sleep(0.05)  # spread over several of the writer's 1 s batches
        assert producer.flush(60) == 0
        with httpx.Client(base_url=hub.url, timeout=60) as client:
            while True:  # until the writer has stored them all (each answer must be good)
                shown = client.get("/api/export.jsonl", params={"q": "http"})
                assert shown.status_code == 200
                if shown.text.count("\n") >= len(calls):
                    break
                assert sink.poll() is None, sink_log(env)
                time.sleep(0.2)
        publishing.clear()
        for t in readers:
            t.join()
        assert answers and set(answers) == {200}, sorted(set(answers))
        stored = {json.loads(line)["id"] for line in shown.text.splitlines()}
        assert stored == {c.call_id for c in calls}

        # The CLI goes through the hub while the sink owns the data dir...
        through_hub = run_wiretide(["query", "--json", "--limit", "5"], env)
        assert [json.loads(x)["id"] for x in through_hub.stdout.splitlines()] == [
            c.call_id for c in sorted(calls, key=lambda c: (c.ts_ns, c.call_id))[-5:]
        ]
    finally:
        code = stop(sink)
    assert code == 0, sink_log(env)
    assert not (Path(env["WIRETIDE_DATA"]) / "hub.json").exists()
    status = json.loads((Path(env["WIRETIDE_DATA"]) / "sink-status.json").read_text())
    assert status["stored_after"] == len(calls)
    # ...and opens the store itself once the sink is gone, printing the same.
    direct = run_wiretide(["query", "--json", "--limit", "5"], env)
    assert direct.stdout == through_hub.stdout


def test_a_busy_port_leaves_the_sink_storing(kafka: str, tmp_path: Path) -> None:
    env = pipeline_env(kafka, tmp_path / "data")
    Path(env["WIRETIDE_DATA"]).mkdir(parents=True)
    make_topics(env)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        sink = start_sink(env, "--serve", f"127.0.0.1:{port}")
        try:
            producer = Producer({"bootstrap.servers": kafka})
            calls = real_calls()
            topic = env["WIRETIDE_PREFIX"] + "wiretide.calls"
            producer.produce(topic, key=b"f", value=encode_call_batch("f", calls))
            assert producer.flush(60) == 0
            while SinkStatus.read(Path(env["WIRETIDE_DATA"])).written < len(calls):
                assert sink.poll() is None, sink_log(env)
                time.sleep(0.2)
            # A tap waiting for this sink's UI reads why there is none (and goes on).
            note = advert(Path(env["WIRETIDE_DATA"]))
            assert note["pid"] == sink.pid and "url" not in note
            assert note["error"].startswith(f"cannot listen on 127.0.0.1:{port}: address already")
            assert find_hub(Path(env["WIRETIDE_DATA"])) is None
        finally:
            assert stop(sink) == 0, sink_log(env)
    log = sink_log(env)
    assert f"wiretide sink: not serving the hub: cannot listen on 127.0.0.1:{port}" in log
    assert "Traceback" not in log
    assert not (Path(env["WIRETIDE_DATA"]) / "hub.json").exists()
    assert len(run_wiretide(["query", "--json"], env).stdout.splitlines()) == len(calls)


def test_tap_with_a_busy_ui_port_warns_once_and_stores(kafka: str, tmp_path: Path) -> None:
    env = pipeline_env(kafka, tmp_path / "data")
    env.pop("DISPLAY", None)
    env.pop("WAYLAND_DISPLAY", None)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = run_wiretide(["tap", "--pcap", str(PCAP), "--quiet", "--ui-port", str(port)], env)
    warning = f"wiretide: warning: UI port {port} is busy (address already in use); going on"
    assert proc.stderr.count(warning) == 1, proc.stderr
    assert "UI: http" not in proc.stderr
    assert "stored 17 calls" in proc.stdout


# ------------------------------------------------ the export routes answer as documented


@pytest.mark.parametrize("label", ["GET /api/export.jsonl", "GET /api/export.pcap"])
@pytest.mark.parametrize("kind", ["hub", "token_hub"])
def test_export_routes_answer_as_documented_never_5xx(
    request: pytest.FixtureRequest, kind: str, label: str
) -> None:
    """Schemathesis over the export routes of a hub on stored calls (its Kafka holding
    their packets) and of a token hub on an empty store: documented answers, no 5xx."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis.specs.openapi.checks import positive_data_acceptance

    from tests.hub.conftest import TOKEN

    hub = request.getfixturevalue(kind)
    headers = {"Authorization": f"Bearer {TOKEN}"} if kind == "token_hub" else {}
    schema = schemathesis.openapi.from_url(hub.url + "/openapi.json")
    operation = next(r.ok() for r in schema.get_all_operations() if r.ok().label == label)

    @given(case=operation.as_strategy())
    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
    def check(case) -> None:  # noqa: ANN001
        # A schema-valid string is not always a KFL filter or a time: those are 400s.
        response = case.call_and_validate(
            headers=headers, excluded_checks=[positive_data_acceptance]
        )
        assert response.status_code < 500, response.text

    check()


def test_export_pcap_of_stored_calls_over_http(hub) -> None:  # noqa: ANN001
    with hub.client() as client:
        whole = client.get("/api/export.pcap", params={"q": "http", "format": "pcapng"})
        assert whole.status_code == 200
        assert whole.headers["content-type"] == "application/x-pcapng"
        assert whole.headers["x-wiretide-calls"] == whole.headers["x-wiretide-exported-calls"]
        assert int(whole.headers["x-wiretide-packets"]) > 0
        assert whole.content[:4] == b"\x0a\x0d\x0d\x0a"
        none = client.get("/api/export.pcap", params={"q": 'request.path == "/nowhere"'})
        assert none.status_code == 404 and "no stored call matches" in none.json()["error"]
        bad = client.get("/api/export.pcap", params={"since": "later"})
        assert bad.status_code == 400 and bad.json()["error"].startswith("since 'later'")
        kfl = client.get("/api/export.jsonl", params={"q": "response.status =="})
        assert kfl.status_code == 400 and kfl.json()["column"] == 19
