"""`wiretide otel` against a real Jaeger (built from Go modules by scripts/build-jaeger.sh,
its OTLP gRPC and HTTP receivers and its query API on free ports): a real tap over golden
captures (HTTP, gRPC, PostgreSQL, Kafka) and a capture of real curl calls carrying W3C
traceparent and B3 headers; every call comes back from Jaeger's query API as a client and
a server span with its conventions' attributes, the traced calls inside their
application's traces, and a killed and restarted exporter leaves no duplicate span."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from producers.pcap import read_segments
from producers.pcap_writer import capture_file
from tests.conftest import GOLDEN, ROOT, pipeline_env, run_wiretide
from tests.conftest import env_with_endpoints as named_env
from tests.e2e.test_map import ENDPOINTS, PLAN, _moved
from tests.gobuild import build_go_peer
from wiretide.broker import free_port_pair

pytestmark = pytest.mark.timeout(2400)  # a cold Jaeger build takes minutes on 2 cores

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
B3_TRACE = "80f198ee56343ba864fe8b2a57d3eff7"
B3_PARENT = "e457b5a2e4d86bd1"
PROTOCOLS = {
    "grpc": GOLDEN / "protocols" / "grpc" / "basic.pcap",
    "postgresql": GOLDEN / "protocols" / "postgresql" / "basic.pcap",
    "kafka": GOLDEN / "protocols" / "kafka" / "basic.pcap",
    "http": GOLDEN / "e2e" / "http_basic.pcap",
}
JAEGER_CONFIG = """
service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics: {{level: none}}
    logs: {{level: warn}}
extensions:
  jaeger_query:
    enable_tracing: false
    storage: {{traces: mem}}
    http: {{endpoint: "127.0.0.1:{query}"}}
    grpc: {{endpoint: "127.0.0.1:{query_grpc}"}}
  jaeger_storage:
    backends:
      mem: {{memory: {{max_traces: 100000}}}}
receivers:
  otlp:
    protocols:
      grpc: {{endpoint: "127.0.0.1:{grpc}"}}
      http: {{endpoint: "127.0.0.1:{http}"}}
exporters:
  jaeger_storage_exporter: {{trace_storage: mem}}
"""


class Jaeger:
    def __init__(self, home: Path, grpc: int | None = None) -> None:
        """Jaeger on free ports: OTLP gRPC on `grpc` (given or free), OTLP HTTP on the next."""
        self.grpc, self.query = grpc or free_port_pair(), free_port_pair()
        self.http, self.query_grpc = self.grpc + 1, self.query + 1
        config = home / "jaeger.yaml"
        config.write_text(JAEGER_CONFIG.format(**vars(self)))
        self.log = home / "jaeger.log"
        binary = Path.home() / ".cache" / "wiretide" / "jaeger" / "jaeger"
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(
                [str(binary), "--config", str(config)], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 120
        while self.get("/api/v3/services") is None:
            assert self.proc.poll() is None, self.log.read_text()[-2000:]
            assert time.monotonic() < deadline, "Jaeger did not answer in 120 s"
            time.sleep(0.3)

    def get(self, path: str) -> dict | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.query}{path}", timeout=30) as r:
                return json.loads(r.read())
        except (OSError, ValueError):
            return None

    def spans(self) -> list[dict]:
        """Every span stored, as stored (raw: no adjuster merges or renames anything):
        the traces of every service, each trace taken once."""
        traces: dict[str, list[dict]] = {}
        for service in (self.get("/api/v3/services") or {}).get("services", []):
            found = self.get(
                f"/api/v3/traces?query.service_name={urllib.parse.quote(service)}"
                "&query.num_traces=100000&query.raw_traces=true"
                "&query.start_time_min=2000-01-01T00:00:00Z"
                "&query.start_time_max=2100-01-01T00:00:00Z"
            )
            this: dict[str, list[dict]] = {}
            for rs in (found or {}).get("result", {}).get("resourceSpans", []):
                resource = _attrs(rs.get("resource", {}).get("attributes", []))
                for ss in rs.get("scopeSpans", []):
                    for span in ss.get("spans", []):
                        attrs = _attrs(span.get("attributes", []))
                        full = {**span, "attrs": attrs, "resource": resource}
                        this.setdefault(span["traceId"], []).append(full)
            for trace_id, spans in this.items():
                traces.setdefault(trace_id, spans)
        return [span for spans in traces.values() for span in spans]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _attrs(pairs: list[dict]) -> dict:
    out = {}
    for pair in pairs:
        value = pair.get("value", {})
        out[pair["key"]] = next(iter(value.values()), None) if value else None
    return out


@pytest.fixture(scope="module")
def jaeger_built() -> None:
    """scripts/build-jaeger.sh: at once when built, else it builds (or waits for the
    build install.sh started in the background)."""
    if shutil.which("go") is None and not Path("/usr/local/go/bin/go").exists():
        pytest.skip("Go is not installed: Jaeger cannot be built")
    build_go_peer("jaeger")


@pytest.fixture(scope="module")
def jaeger(jaeger_built: None, tmp_path_factory: pytest.TempPathFactory) -> Jaeger:
    server = Jaeger(tmp_path_factory.mktemp("jaeger"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def traced_capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real curl calls to a real Python HTTP server on loopback, recorded by tcpdump: one
    with a W3C traceparent, one with a B3 header, one without (a 404)."""
    if shutil.which("tcpdump") is None or shutil.which("curl") is None:
        pytest.skip("tcpdump and curl are needed to record the traced calls")
    tmp = tmp_path_factory.mktemp("traced")
    (tmp / "www").mkdir()
    (tmp / "www" / "hello.json").write_text('{"hello": "world"}')
    port, out = free_port_pair(), tmp / "traced.pcap"
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=tmp / "www",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for(lambda: _curl(f"{url}/hello.json") == 0, "the HTTP server to answer")
        dump = subprocess.Popen(
            ["tcpdump", "-i", "lo", "-s", "0", "-n", "-U", "--immediate-mode", "-Z", "root",
             "-w", str(out), f"tcp port {port}"],
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        line = dump.stderr.readline()
        if "listening on" not in line:
            dump.kill()
            pytest.skip(f"tcpdump cannot capture on lo here: {line.strip()}")
        time.sleep(0.3)
        assert _curl(f"{url}/hello.json", "-H", f"traceparent: 00-{TRACE}-{PARENT}-01") == 0
        assert _curl(f"{url}/hello.json", "-H", f"b3: {B3_TRACE}-{B3_PARENT}-1") == 0
        assert _curl(f"{url}/missing") == 0
        time.sleep(1.5)
        dump.send_signal(signal.SIGINT)
        dump.wait(30)
    finally:
        server.terminate()
        server.wait(30)
    return out


def _curl(url: str, *args: str) -> int:
    return subprocess.run(["curl", "-s", "-o", "/dev/null", *args, url], timeout=30).returncode


def _wait_for(ok, what: str, within: float = 180.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + within
    while not ok():
        assert time.monotonic() < deadline, f"waited {within:.0f} s for {what}"
        time.sleep(0.5)


def write_capture(path: Path, segments: list) -> Path:
    with path.open("wb") as out:
        out.writelines(capture_file(segments))
    return path


def moved(name: str, capture: Path) -> list:
    """A golden capture with its client and server on the IPs of tests/e2e/test_map.py's
    made-up pods and services."""
    return _moved(capture, *PLAN[str(capture.relative_to(GOLDEN))])


def env_with_endpoints(kafka: str, data: Path) -> dict[str, str]:
    """A pipeline environment whose endpoints topic names those pods and services."""
    return named_env(kafka, data, ENDPOINTS)


@pytest.fixture(scope="module")
def pipeline(kafka: str, traced_capture: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("otel")
    segments = [seg for name, path in PROTOCOLS.items() for seg in moved(name, path)]
    segments += read_segments(traced_capture)
    merged = write_capture(tmp / "all.pcap", segments)
    env = env_with_endpoints(kafka, tmp / "data")
    run_wiretide(["tap", "--quiet", "--no-ui", "--pcap", str(merged)], env)
    return env


def stored_calls(env: dict) -> dict[str, dict]:
    proc = run_wiretide(["query", "--json", "--limit", "100000"], env)
    calls = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    return {call["id"]: call for call in calls}


def start_exporter(env: dict, log: Path, endpoint: str, *extra: str) -> subprocess.Popen:
    """`wiretide otel` in the background, its stdout and stderr in LOG.out and LOG.err."""
    with log.with_suffix(".out").open("w") as out, log.with_suffix(".err").open("w") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "wiretide", "otel", "--endpoint", endpoint, *extra],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=err,
        )


def logs(log: Path) -> tuple[str, str]:
    return log.with_suffix(".out").read_text(), log.with_suffix(".err").read_text()


def committed_and_end(env: dict) -> tuple[list[int], list[int]]:
    """The otel group's committed offsets and the calls topic's end, per partition."""
    topic = env["WIRETIDE_PREFIX"] + "wiretide.calls"
    consumer = Consumer(
        {
            "bootstrap.servers": env["WIRETIDE_KAFKA"],
            "group.id": env["WIRETIDE_PREFIX"] + "wiretide-otel",
        }  # noqa: E501
    )
    try:
        parts = consumer.list_topics(topic, timeout=30).topics[topic].partitions
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        committed = [tp.offset for tp in consumer.committed(tps, timeout=30)]
        ends = [consumer.get_watermark_offsets(tp, timeout=30)[1] for tp in tps]
    finally:
        consumer.close()
    return committed, ends


def is_client(span: dict) -> bool:
    return span["kind"] in ("SPAN_KIND_CLIENT", 3)


def spans_by_call(spans: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for span in spans:
        out.setdefault(span["attrs"].get("wiretide.call_id"), []).append(span)
    return out


def _stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        return proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(60)


@pytest.fixture(scope="module")
def exported(jaeger: Jaeger, pipeline: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The first capture exported over OTLP/gRPC; the exporter killed (SIGKILL) once its
    offsets are committed; a second capture (Redis) tapped; a new exporter, over OTLP/HTTP
    this time, exports what came since."""
    tmp = tmp_path_factory.mktemp("exporters")
    calls = stored_calls(pipeline)
    grpc = f"http://127.0.0.1:{jaeger.grpc}"
    first = start_exporter(pipeline, tmp / "first", grpc, "--batch", "50")
    try:
        _wait_for(lambda: len(jaeger.spans()) >= 2 * len(calls), "the first capture's spans")
        _wait_for(lambda: _all_committed(pipeline), "the exporter to commit")
    finally:
        _stop(first, signal.SIGKILL)
    redis = moved("redis", GOLDEN / "protocols" / "redis" / "basic.pcap")
    redis_pcap = write_capture(tmp / "redis.pcap", redis)
    run_wiretide(["tap", "--quiet", "--no-ui", "--pcap", str(redis_pcap)], pipeline)
    all_calls = stored_calls(pipeline)
    assert len(all_calls) > len(calls)
    http = f"http://127.0.0.1:{jaeger.http}"
    second = start_exporter(pipeline, tmp / "second", http, "--protocol", "http")
    try:
        _wait_for(lambda: len(jaeger.spans()) >= 2 * len(all_calls), "the Redis spans")
        _wait_for(lambda: _all_committed(pipeline), "the exporter to commit")
        time.sleep(3)  # a replayed batch would land in this time
    finally:
        code = _stop(second)
    out, err = logs(tmp / "second")
    return {"calls": all_calls, "spans": jaeger.spans(), "stdout": out, "stderr": err,
            "code": code, "first_calls": calls}  # fmt: skip


def _all_committed(env: dict) -> bool:
    committed, ends = committed_and_end(env)
    return committed == ends


def test_every_call_is_one_client_and_one_server_span(exported):
    by_call = spans_by_call(exported["spans"])
    assert set(by_call) == set(exported["calls"])
    for call_id, spans in by_call.items():
        kinds = sorted(s["kind"] for s in spans)
        assert kinds == ["SPAN_KIND_CLIENT", "SPAN_KIND_SERVER"] or kinds == [2, 3], (
            call_id,
            kinds,
        )
        [client] = [s for s in spans if is_client(s)]
        [server] = [s for s in spans if not is_client(s)]
        assert client["traceId"] == server["traceId"]
        assert server["parentSpanId"] == client["spanId"]
        call = exported["calls"][call_id]
        assert int(client["startTimeUnixNano"]) == call["timestamp_ns"]


def test_restart_left_no_duplicate_span(exported):
    ids = [(s["traceId"], s["spanId"]) for s in exported["spans"]]
    assert len(ids) == len(set(ids)) == 2 * len(exported["calls"])
    assert "Traceback" not in exported["stderr"]
    assert exported["code"] == 0 and "exported" in exported["stdout"]


def _one(exported: dict, **want: object) -> list[dict]:
    return [s for s in exported["spans"] if all(s["attrs"].get(k) == v for k, v in want.items())]


def test_http_spans_have_http_attributes(exported):
    spans = _one(exported, **{"wiretide.protocol": "http"})
    assert spans
    for span in spans:
        a = span["attrs"]
        call = exported["calls"][a["wiretide.call_id"]]
        assert a["http.request.method"] == call["request"]["method"]
        assert a["url.path"] == call["request"]["path"]
        if call["response"]["status"]:
            assert int(a["http.response.status_code"]) == call["response"]["status"]
        assert a["server.address"] == call["dst"]["ip"]
        assert int(a["server.port"]) == call["dst"]["port"]
        assert a["client.address"] == call["src"]["ip"]
        side = call["src"] if is_client(span) else call["dst"]
        service = (side["service"] or {}).get("name")
        want = service or side["pod"] or side["ip"]  # front -> catalogue; 127.0.0.1
        assert span["resource"]["service.name"] == want


def test_grpc_spans_have_rpc_attributes(exported):
    spans = _one(exported, **{"rpc.system": "grpc"})
    assert len(spans) == 2 * len([c for c in exported["calls"].values() if c["protocol"] == "grpc"])
    for span in spans:
        a = span["attrs"]
        call = exported["calls"][a["wiretide.call_id"]]
        service, method = call["request"]["path"].lstrip("/").rsplit("/", 1)
        assert (a["rpc.service"], a["rpc.method"]) == (service, method)
        assert int(a["rpc.grpc.status_code"]) == call["response"]["status"]


def test_database_and_kafka_spans_have_their_attributes(exported):
    pg = _one(exported, **{"db.system": "postgresql"})
    assert pg and any(s["attrs"].get("db.query.text") for s in pg)
    redis = _one(exported, **{"db.system": "redis"})
    assert redis and all(s["attrs"]["db.operation.name"] for s in redis)
    kafka = _one(exported, **{"messaging.system": "kafka"})
    assert kafka and {"Produce", "Fetch"} <= {s["attrs"]["messaging.operation.name"] for s in kafka}
    produce = [s for s in kafka if s["attrs"]["messaging.operation.name"] == "Produce"]
    assert all(s["attrs"]["messaging.destination.name"] for s in produce)


@pytest.mark.parametrize(
    ("system", "client", "server"),
    [
        ({"rpc.system": "grpc"}, ("checkout-5f6d8b9c7-q2w4z", "shop", "checkout"),
         ("inventory-1", "shop", "inventory")),
        ({"db.system": "postgresql"}, ("orders-6b7c8d9f5-c4d6f", "shop", "orders"),
         ("db-0", "data", "db")),
        ({"messaging.system": "kafka"}, ("node-agent-p4r6t", "kube-system", None),
         ("kafka-0", "data", "kafka")),
    ],
)  # fmt: skip
def test_both_sides_carry_their_kubernetes_identity(exported, system, client, server):
    spans = _one(exported, **system)
    assert spans
    for span in spans:
        pod, namespace, service = client if is_client(span) else server
        resource = span["resource"]
        assert resource["k8s.pod.name"] == pod
        assert resource["k8s.namespace.name"] == namespace
        assert resource["service.name"] == (service or pod)
        if is_client(span):  # and each names the other side
            assert span["attrs"]["peer.service"] == server[2]
            assert span["attrs"]["wiretide.dst.k8s.pod.name"] == server[0]
        else:
            assert span["attrs"]["wiretide.src.k8s.pod.name"] == client[0]


def test_traced_requests_join_their_applications_traces(exported):
    for trace, parent in ((TRACE, PARENT), (B3_TRACE, B3_PARENT)):
        spans = [s for s in exported["spans"] if _hex(s["traceId"]) == trace]
        assert len(spans) == 2, trace
        client = next(s for s in spans if is_client(s))
        server = next(s for s in spans if s is not client)
        assert _hex(client["parentSpanId"]) == parent
        assert server["parentSpanId"] == client["spanId"]
        assert client["attrs"]["url.path"] == "/hello.json"


def _hex(value: str) -> str:
    """Jaeger's JSON gives ids in hex (or base64, as protobuf's JSON does)."""
    if len(value) in (16, 32) and all(c in "0123456789abcdef" for c in value.lower()):
        return value.lower()
    import base64

    return base64.b64decode(value).hex()


def test_unreachable_collector_is_one_line_commits_nothing_and_retries(
    kafka, jaeger_built, tmp_path
):
    """Nothing listens on the endpoint: said once, nothing committed, tried again and
    again; once a Jaeger comes up there, every call gets there and is committed."""
    env = pipeline_env(kafka, tmp_path / "data")
    run_wiretide(["tap", "--quiet", "--no-ui", "--pcap", str(PROTOCOLS["http"])], env)
    calls = stored_calls(env)
    port = free_port_pair()
    dead = f"http://127.0.0.1:{port}"
    proc = start_exporter(env, tmp_path / "otel", dead)
    late = None
    try:
        _wait_for(lambda: "waiting for the collector" in logs(tmp_path / "otel")[1],
                  "the exporter to say that the collector is away")  # fmt: skip
        time.sleep(8)  # several tries (backoff 0.2 s doubling, each try up to 10 s)
        committed, ends = committed_and_end(env)
        assert all(offset < 0 for offset in committed), committed  # nothing committed
        assert sum(ends) > 0
        late = Jaeger(tmp_path, grpc=port)
        _wait_for(lambda: len(late.spans()) >= 2 * len(calls), "the spans, once Jaeger is up")
        _wait_for(lambda: _all_committed(env), "the exporter to commit")
    finally:
        code = _stop(proc)
        if late is not None:
            late.stop()
    out, err = logs(tmp_path / "otel")
    assert code == 0
    waiting = [line for line in err.splitlines() if "waiting for the collector" in line]
    assert len(waiting) == 1, err  # said once, however many tries
    assert dead in waiting[0] and "Connection refused" in waiting[0]
    assert "wiretide otel: back after" in err
    assert "Traceback" not in err
    assert f"exported {2 * len(calls)} spans of {len(calls)} calls" in out


def test_bad_endpoint_is_one_line(wt_env: dict):
    proc = run_wiretide(["otel", "--endpoint", "collector:4317"], wt_env, check=False)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "--endpoint" in proc.stderr
    assert "Traceback" not in proc.stderr
