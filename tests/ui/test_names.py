"""Names before addresses: the traffic list shows `namespace/pod` (or `namespace/service`)
for each side the pipeline named, its address on hover and in the detail, and the
address as before for a side nobody named.

The calls are real captures (golden HTTP, Redis, WebSocket and Kafka clients and
servers) moved to cluster IPs, those IPs published as pods and services on the data
dir's endpoints topic (what the agents' Kubernetes watcher does), and the whole replayed
by `wiretide tap --pcap`: its stream workers name both sides as they would in a cluster
(tests/e2e/test_map.py's plan)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from producers.pcap_writer import PcapWriter
from tests.conftest import GOLDEN, env_with_endpoints, run_wiretide
from tests.e2e.test_map import ENDPOINTS, OWNER, _moved
from tests.hub.conftest import Hub, start_hub
from tests.ui.test_glyphs import odd_characters
from tests.ui.test_ui import open_ui, stored, type_filter, wait_for_rows

# capture -> (client IP, server IP); 192.0.2.10 and the Kafka pair are nobody's
PLAN = {
    GOLDEN / "e2e" / "http_basic.pcap": ("10.1.0.1", "10.96.0.10"),  # pod -> service
    GOLDEN / "protocols" / "redis" / "basic.pcap": ("10.1.0.12", "10.1.1.25"),  # pod -> pod
    GOLDEN / "protocols" / "websocket" / "basic.pcap": ("192.0.2.10", "10.96.0.13"),
    GOLDEN / "protocols" / "kafka" / "basic.pcap": ("192.0.2.77", "198.51.100.77"),
}


def _cluster_pcap(path: Path) -> Path:
    segments = []
    for capture, (client, server) in PLAN.items():
        segments += _moved(capture, client, server)
    segments.sort(key=lambda s: s.ts_ns)  # stable: each flow keeps its order
    writer = PcapWriter()
    with path.open("wb") as out:
        out.write(writer.header())
        for s in segments:
            out.write(writer.packets(s))
    return path


@pytest.fixture(scope="module")
def named_hub(kafka: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    tmp = tmp_path_factory.mktemp("names")
    env = env_with_endpoints(kafka, tmp / "data", ENDPOINTS)
    run_wiretide(["tap", "--quiet", "--pcap", str(_cluster_pcap(tmp / "cluster.pcap"))], env)
    running = start_hub(env)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def named_api(named_hub: Hub) -> Iterator[httpx.Client]:
    with named_hub.client() as client:
        yield client


def address(side: dict) -> str:
    return f"[{side['ip']}]:{side['port']}" if ":" in side["ip"] else f"{side['ip']}:{side['port']}"


def shown_as(side: dict) -> str:
    """What the list shows for one side, from the API's answer: names first."""
    known = side["pod"] or side["service"]
    return f"{known['namespace']}/{known['name']}" if known else address(side)


def check_rows(page: Page, calls: list[dict]) -> None:
    """Each call's row: both sides as the API names them, the address in the title."""
    for call in calls:
        row = page.locator(f'[data-testid="row"][data-id="{call["id"]}"]')
        for name in ("src", "dst"):
            cell = row.get_by_test_id(f"peer-{name}")
            expect(cell).to_have_text(shown_as(call[name]))
            title = cell.get_attribute("title").split("\n")
            assert address(call[name]) in title
            if call[name]["pod"]:  # its workload as the service map names it
                assert f"workload {OWNER[call[name]['pod']['name']]}" in title


@pytest.mark.parametrize(
    ("kfl", "src_named", "dst_named"),
    [
        ('http and dst.ip == "10.96.0.10"', True, True),  # a front pod calling a service
        ("redis", True, True),  # pod to pod
        ("websocket", False, True),  # from outside to the chat service
        ("kafka", False, False),  # nobody's: addresses, as before
    ],
)
def test_list_shows_names_first_and_the_address_on_hover(
    page: Page, named_hub: Hub, named_api, kfl: str, src_named: bool, dst_named: bool
) -> None:
    calls = stored(named_api, kfl)
    assert calls
    assert all(bool(c["src"]["name"]) == src_named for c in calls)
    assert all(bool(c["dst"]["name"]) == dst_named for c in calls)
    open_ui(page, named_hub)
    type_filter(page, kfl)
    assert len(calls) < 100  # one page: the count says when the filter is in force
    expect(page.get_by_test_id("count")).to_have_text(f"{len(calls)} calls")
    expect(page.locator('[data-testid="row"]').first).to_have_attribute("data-id", calls[0]["id"])
    check_rows(page, calls[:15])  # the first rows, in view


def test_a_pod_is_named_with_its_namespace_and_the_detail_keeps_the_address(
    page: Page, named_hub: Hub, named_api
) -> None:
    [call, *_] = stored(named_api, 'src.pod.name == "front-7d9c4b-z9v4c"')
    assert call["src"]["pod"] == {"name": "front-7d9c4b-z9v4c", "namespace": "shop"}
    assert call["dst"]["pod"] == {"name": "db-0", "namespace": "data"}
    open_ui(page, named_hub)
    type_filter(page, f'id == "{call["id"]}"')
    wait_for_rows(page, [call["id"]])
    row = page.locator('[data-testid="row"]')
    expect(row.get_by_test_id("peer-src")).to_have_text("shop/front-7d9c4b-z9v4c")
    expect(row.get_by_test_id("peer-dst")).to_have_text("data/db-0")
    title = row.get_by_test_id("peer-src").get_attribute("title").split("\n")
    assert title == [
        "pod front-7d9c4b-z9v4c",
        f"workload {OWNER['front-7d9c4b-z9v4c']}",  # as the service map names it
        f"service {call['src']['service']['name']}",
        "namespace shop",
        address(call["src"]),
    ]
    # detailed rows add both addresses under the names
    page.get_by_test_id("density-detailed").click()
    expect(row.get_by_test_id("addresses")).to_have_text(
        f"{address(call['src'])} {address(call['dst'])}"  # an SVG arrow between them
    )
    assert odd_characters(page) == []
    row.click()
    detail = page.get_by_test_id("detail")
    expect(detail).to_contain_text(f"shop/front-7d9c4b-z9v4c {address(call['src'])}")
    expect(detail).to_contain_text(f"data/db-0 {address(call['dst'])}")
