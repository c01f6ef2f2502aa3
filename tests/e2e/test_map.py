"""The service map end to end: the golden captures (real clients and servers) with each
capture's client and server moved to their own IPs, those IPs published as made-up pods
and services on the endpoints topic, everything replayed by `wiretide tap` through a real
broker into real chDB. The map (CLI, JSON, hub API) must agree with the calls
`wiretide query --json` returns for the same window."""

from __future__ import annotations

import dataclasses
import json
import subprocess
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from producers.pcap import read_segments
from producers.pcap_writer import PcapWriter
from schemas.config import Settings
from schemas.records import ACK, SYN, Endpoint, Segment
from tests.conftest import GOLDEN, pipeline_env, run_wiretide
from tests.golden.protocols.dissect import golden_cases
from tests.hub.conftest import start_hub
from wiretide.hub.client import advertise, withdraw
from wiretide.kube.publish import EndpointPublisher

# capture (relative to tests/golden) -> (client IP, server IP); captures not listed get
# addresses nobody knows, so they map as IP nodes.
PLAN = {
    "e2e/http_basic.pcap": ("10.1.0.1", "10.96.0.10"),
    "protocols/amqp/basic.pcap": ("10.1.0.2", "10.1.1.20"),
    "protocols/amqp/extras.pcap": ("10.1.0.3", "10.1.1.20"),
    "protocols/dns/basic.pcap": ("10.1.0.4", "10.96.0.53"),
    "protocols/gql/basic.pcap": ("10.1.0.5", "10.96.0.11"),
    "protocols/grpc/basic.pcap": ("10.1.0.6", "10.1.1.21"),
    "protocols/http2/basic.pcap": ("10.1.0.7", "203.0.113.5"),
    "protocols/kafka/basic.pcap": ("10.1.0.8", "10.1.1.22"),
    "protocols/mongodb/basic.pcap": ("10.1.0.9", "10.1.1.23"),
    "protocols/mysql/basic.pcap": ("10.1.0.10", "10.1.1.24"),
    "protocols/postgresql/basic.pcap": ("10.1.0.11", "10.1.1.25"),
    "protocols/redis/basic.pcap": ("10.1.0.12", "10.96.0.12"),
    "protocols/websocket/basic.pcap": ("192.0.2.10", "10.96.0.13"),
    "protocols/websocket/deflate.pcap": ("192.0.2.11", "10.96.0.13"),
    "protocols/websocket/deflate_reset.pcap": ("192.0.2.12", "10.96.0.13"),
}


def pod(ip: str, name: str, ns: str, service: str = "") -> Endpoint:
    return Endpoint(ip=ip, kind="pod", name=name, namespace=ns, service=service, node="node-a")


def service(ip: str, name: str, ns: str) -> Endpoint:
    return Endpoint(ip=ip, kind="service", name=name, namespace=ns)


ENDPOINTS = [
    pod("10.1.0.1", "front-7d9c4b-x2x9q", "shop", "front"),
    pod("10.1.0.5", "front-7d9c4b-b7k2m", "shop", "front"),
    pod("10.1.0.7", "front-7d9c4b-q5w8z", "shop", "front"),
    pod("10.1.0.12", "front-7d9c4b-z9v4c", "shop", "front"),
    pod("10.1.0.2", "orders-6b7c8d9f5-tt4z2", "shop", "orders"),
    pod("10.1.0.3", "orders-6b7c8d9f5-h8k2n", "shop", "orders"),
    pod("10.1.0.9", "orders-6b7c8d9f5-m2n4p", "shop", "orders"),
    pod("10.1.0.10", "orders-6b7c8d9f5-w6x8z", "shop", "orders"),
    pod("10.1.0.11", "orders-6b7c8d9f5-c4d6f", "shop", "orders"),
    pod("10.1.0.6", "checkout-5f6d8b9c7-q2w4z", "shop", "checkout"),
    pod("10.1.0.4", "node-agent-k2v7x", "kube-system"),
    pod("10.1.0.8", "node-agent-p4r6t", "kube-system"),
    service("10.96.0.10", "catalogue", "shop"),
    service("10.96.0.53", "kube-dns", "kube-system"),
    service("10.96.0.11", "graph", "shop"),
    service("10.96.0.12", "redis", "cache"),
    service("10.96.0.13", "chat", "shop"),
    pod("10.1.1.20", "rabbitmq-0", "data", "rabbitmq"),
    pod("10.1.1.21", "inventory-1", "shop", "inventory"),
    pod("10.1.1.22", "kafka-0", "data", "kafka"),
    pod("10.1.1.23", "mongo-0", "data", "mongo"),
    pod("10.1.1.24", "mysql-0", "data", "mysql"),
    pod("10.1.1.25", "db-0", "data", "db"),
]
# What a user calls each pod's workload (written out, not computed).
OWNER = {
    "front-7d9c4b-x2x9q": "front",
    "front-7d9c4b-b7k2m": "front",
    "front-7d9c4b-q5w8z": "front",
    "front-7d9c4b-z9v4c": "front",
    "orders-6b7c8d9f5-tt4z2": "orders",
    "orders-6b7c8d9f5-h8k2n": "orders",
    "orders-6b7c8d9f5-m2n4p": "orders",
    "orders-6b7c8d9f5-w6x8z": "orders",
    "orders-6b7c8d9f5-c4d6f": "orders",
    "checkout-5f6d8b9c7-q2w4z": "checkout",
    "node-agent-k2v7x": "node-agent",
    "node-agent-p4r6t": "node-agent",
    "rabbitmq-0": "rabbitmq",
    "inventory-1": "inventory",
    "kafka-0": "kafka",
    "mongo-0": "mongo",
    "mysql-0": "mysql",
    "db-0": "db",
}
# Edges a user of these clients expects to see (every capture adds at least these).
SURE_EDGES = {
    ("shop/front", "shop/catalogue", "http"),
    ("shop/orders", "data/rabbitmq", "amqp"),
    ("kube-system/node-agent", "kube-system/kube-dns", "dns"),
    ("shop/checkout", "shop/inventory", "grpc"),
    ("shop/front", "203.0.113.5", "http2"),
    ("kube-system/node-agent", "data/kafka", "kafka"),
    ("shop/orders", "data/mongo", "mongodb"),
    ("shop/orders", "data/mysql", "mysql"),
    ("shop/orders", "data/db", "postgresql"),
    ("shop/front", "cache/redis", "redis"),
    ("192.0.2.10", "shop/chat", "websocket"),
}


def _server_ports(segments: list[Segment]) -> set[int]:
    """Ports that accepted connections (SYN's destination) or first got a datagram."""
    ports, seen_udp = set(), set()
    for s in segments:
        if s.transport == "udp":
            flow = frozenset({s.src_port, s.dst_port})
            if flow not in seen_udp:
                seen_udp.add(flow)
                ports.add(s.dst_port)
        elif s.flags & SYN and not s.flags & ACK:
            ports.add(s.dst_port)
    return ports


def _moved(capture: Path, client: str, server: str) -> list[Segment]:
    segments = list(read_segments(capture))
    ports = _server_ports(segments)
    assert ports, f"{capture}: no connection start seen"
    out = []
    for s in segments:
        to_server = s.dst_port in ports and s.src_port not in ports
        src, dst = (client, server) if to_server else (server, client)
        out.append(dataclasses.replace(s, src_ip=src, dst_ip=dst))
    return out


def _plan() -> dict[Path, tuple[str, str]]:
    captures = [GOLDEN / "e2e" / "http_basic.pcap", *golden_cases()]
    plan, unknown = {}, 0
    for capture in captures:
        rel = str(capture.relative_to(GOLDEN))
        if rel not in PLAN:
            unknown += 1
        plan[capture] = PLAN.get(rel, (f"192.0.2.{100 + unknown}", f"198.51.100.{unknown}"))
    return plan


@pytest.fixture(scope="module")
def stored(kafka: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("map")
    segments = []
    for capture, (client, server) in _plan().items():
        segments += _moved(capture, client, server)
    segments.sort(key=lambda s: s.ts_ns)  # stable: each flow keeps its order
    merged = tmp / "cluster.pcap"
    writer = PcapWriter()
    with merged.open("wb") as out:
        out.write(writer.header())
        for s in segments:
            out.write(writer.packets(s))
    env = pipeline_env(kafka, tmp / "data")
    topic = env["WIRETIDE_PREFIX"] + "wiretide.endpoints"
    admin = AdminClient({"bootstrap.servers": kafka})
    new = NewTopic(topic, 1, 1, config={"cleanup.policy": "compact"})
    admin.create_topics([new])[topic].result()
    assert EndpointPublisher(Settings(kafka=kafka), topic).sync(ENDPOINTS) == len(ENDPOINTS)
    proc = run_wiretide(["tap", "--quiet", "--pcap", str(merged)], env)
    assert "Traceback" not in proc.stdout + proc.stderr
    return env


@pytest.fixture(scope="module")
def calls(stored: dict[str, str]) -> list[dict]:
    out = run_wiretide(["query", "--json", "--limit", "1000000"], stored).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def run_map(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run_wiretide(["map", *args], env, check=check)


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat()


def _span(calls: list[dict]) -> tuple[str, str]:
    stamps = [c["timestamp_ns"] for c in calls]
    return _iso(min(stamps)), _iso(max(stamps) + 1000)


def _node(side: dict) -> str:
    if side["pod"]:
        return f"{side['pod']['namespace']}/{OWNER[side['pod']['name']]}"
    if side["service"]:
        return f"{side['service']['namespace']}/{side['service']['name']}"
    return side["ip"]


def _failed(call: dict) -> bool:
    """The documented error rule (ddl.ERROR_SQL), restated from the call's JSON."""
    flags, protocol = set(call["flags"]), call["protocol"]
    request, response = call["request"], call["response"]
    status = response["status"] if response else 0
    if "no_response" in flags:
        one_way = (
            flags & {"oneway", "more_to_come", "push"}
            or (protocol == "websocket" and request["method"] in ("text", "binary", "pong"))
            or (
                protocol == "kafka"
                and request["method"] == "Produce"
                and request["headers"].get("acks") == "0"
            )
        )
        return not one_way
    if protocol in ("http", "http2", "gql"):
        return status >= 500 or "graphql_error" in flags
    if protocol == "websocket":
        return status not in (0, 1000, 1001, 1005)
    if protocol == "dns":
        return status not in (0, 3)
    return status != 0


def _expected(calls: list[dict]) -> dict[tuple[str, str, str], list[int]]:
    edges: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for c in calls:
        edge = edges[(_node(c["src"]), _node(c["dst"]), c["protocol"])]
        edge[0] += 1
        edge[1] += _failed(c)
        edge[2] += c["request"]["body_size"] + (c["response"] or {"body_size": 0})["body_size"]
    return dict(edges)


def _got(graph: dict) -> dict[tuple[str, str, str], list[int]]:
    return {
        (e["src"], e["dst"], e["protocol"]): [e["calls"], e["errors"], e["bytes"]]
        for e in graph["edges"]
    }


def test_every_protocol_got_identities_and_edges(calls):
    protocols = {c["protocol"] for c in calls}
    assert {"http", "amqp", "dns", "grpc", "http2", "kafka", "mongodb", "mysql"} <= protocols
    assert {"postgresql", "redis", "websocket", "gql"} <= protocols
    assert SURE_EDGES <= set(_expected(calls))


@pytest.mark.parametrize("exact", [False, True])
def test_map_edges_match_the_stored_calls_of_the_window(stored, calls, exact):
    since, until = _span(calls)
    graph = json.loads(
        run_map(stored, "--json", "--since", since, "--until", until, *(["--exact"] * exact)).stdout
    )
    assert graph["exact"] is exact
    assert _got(graph) == _expected(calls)
    assert any(e[1] for e in _expected(calls).values()), "the captures hold failed calls"
    kinds = {n["id"]: n["kind"] for n in graph["nodes"]}
    assert kinds["shop/front"] == kinds["data/db"] == "pod"
    assert kinds["shop/catalogue"] == kinds["cache/redis"] == "service"
    assert kinds["203.0.113.5"] == "ip"


def test_latency_quantiles_lie_within_each_edges_answered_calls(stored, calls):
    since, until = _span(calls)
    graph = json.loads(run_map(stored, "--json", "--since", since, "--until", until).stdout)
    answered = defaultdict(list)
    for c in calls:
        if c["response"] and "push" not in c["flags"]:
            answered[(_node(c["src"]), _node(c["dst"]), c["protocol"])].append(c["elapsed_ms"])
    for e in graph["edges"]:
        times = answered.get((e["src"], e["dst"], e["protocol"]))
        if not times:
            assert e["p50_ms"] is None
            continue
        low, high = min(times) - 0.001, max(times) + 0.001
        assert low <= e["p50_ms"] <= e["p95_ms"] <= e["p99_ms"] <= high
        if len(times) == 1:
            assert e["p50_ms"] == pytest.approx(times[0], abs=0.001)


def test_a_minute_of_the_window_holds_only_that_minutes_calls(stored, calls):
    first = min(c["timestamp_ns"] for c in calls)
    start = first - first % 60_000_000_000
    inside = [c for c in calls if start <= c["timestamp_ns"] < start + 60_000_000_000]
    graph = json.loads(
        run_map(stored, "--json", "--since", _iso(first), "--until", _iso(first + 1000)).stdout
    )
    assert graph["since"] == _iso(start).replace("+00:00", "Z")
    assert _got(graph) == _expected(inside)


def test_a_kfl_filter_maps_only_its_calls(stored, calls):
    since, until = _span(calls)
    proc = run_map(stored, "--json", "--since", since, "--until", until, 'dst.namespace == "data"')
    graph = json.loads(proc.stdout)
    inside = [c for c in calls if (c["dst"]["namespace"] or "") == "data"]
    assert inside and _got(graph) == _expected(inside)


def test_table_groups_by_namespace_busiest_first(stored, calls):
    since, until = _span(calls)
    out = run_map(stored, "--since", since, "--until", until).stdout
    lines = out.splitlines()
    headers = [line for line in lines if line and not line.startswith(" ")]
    assert headers[:4] == [
        "namespace kube-system",
        "namespace shop",
        "outside the cluster",
        headers[3],
    ]
    expected = _expected(calls)
    assert headers[3].startswith(
        f"{len(expected)} edges, {sum(e[0] for e in expected.values())} calls"
    )
    shop = lines[lines.index("namespace shop") + 2 : lines.index("outside the cluster") - 1]
    counts = [int(row.split()[3]) for row in shop]
    assert counts == sorted(counts, reverse=True)
    db_row = next(row.split() for row in shop if row.split()[1] == "data/db")
    assert db_row[:4] == [
        "orders",
        "data/db",
        "postgresql",
        str(expected[("shop/orders", "data/db", "postgresql")][0]),
    ]


def test_bad_window_and_filter_are_one_line(stored):
    for args, says in [
        (["--since", "yesterday"], "--since/--until: expected a duration ago"),
        (["--since", "1h", "--until", "2h"], "before it starts"),
        (["http and"], "1:9:"),
    ]:
        proc = run_map(stored, *args, check=False)
        assert proc.returncode == 2
        assert proc.stderr.startswith("wiretide: error: ") and says in proc.stderr
        assert proc.stderr.count("\n") == 1


def test_hub_api_serves_the_same_graph_and_map_goes_through_the_hub(stored, calls):
    since, until = _span(calls)
    direct = json.loads(run_map(stored, "--json", "--since", since, "--until", until).stdout)
    hub = start_hub(stored)
    data = Path(stored["WIRETIDE_DATA"])
    try:
        with hub.client() as client:
            answer = client.get("/api/map", params={"since": since, "until": until})
            assert answer.status_code == 200, answer.text
            assert answer.json() == direct
            bad = client.get("/api/map", params={"q": "http and"})
            assert bad.status_code == 400 and bad.json()["column"] == 9
        # the hub owns the data dir now: `wiretide map` finds it (as a tap advertises
        # its own) and asks it
        advertise(data, hub.url, None)
        routed = run_map(stored, "--json", "--since", since, "--until", until)
        assert json.loads(routed.stdout) == direct
    finally:
        withdraw(data)
        hub.stop()
