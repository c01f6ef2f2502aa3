"""The service map as users see it, against GET /api/map's answer: on loopback (the golden
captures: one node calling itself per protocol) a centred, readable node with a visible,
labelled loop per protocol; hover for rate and p95; the table view. With hundreds of
nodes (tests/ui/synthetic_map.py's calls, stored by the real writer into the hub's data
dir): the table first, radii by calls, grouping by namespace, zoom, pan and fit."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.hub.conftest import Hub, start_hub
from tests.ui import synthetic_map
from tests.ui.test_ui import open_ui

ALL = {"since": "1970-01-01T00:00:00Z"}
AUTO_TABLE = 150  # ui/src/ServiceMap.tsx: above this many nodes the table comes first
BIG_NODES = synthetic_map.NAMESPACES * synthetic_map.WORKLOADS

# Every node's circle on screen: [key, calls, r in drawing units, left, top, right, bottom].
CIRCLES = """() => [...document.querySelectorAll('[data-testid=map-node]')].map(g => {
    const c = g.querySelector('circle'); const b = c.getBoundingClientRect();
    return [g.dataset.key, +g.dataset.calls, +c.getAttribute('r'),
            b.left, b.top, b.right, b.bottom];
})"""


@pytest.fixture(scope="module")
def big_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    """A hub over 240 workloads in 12 namespaces (calls of the last few minutes)."""
    running = start_hub(synthetic_map.filled_env(tmp_path_factory.mktemp("bigmap")))
    yield running
    running.stop()


def open_map(page: Page, hub: Hub) -> None:
    open_ui(page, hub)
    page.get_by_test_id("tab-map").click()
    expect(page.get_by_test_id("map-counts")).to_be_visible()


def box(locator: Locator) -> tuple[float, float, float, float]:
    b = locator.bounding_box()
    assert b is not None, f"{locator} is not drawn"
    return b["x"], b["y"], b["x"] + b["width"], b["y"] + b["height"]


def inside(inner: tuple, outer: tuple, slack: float = 1) -> bool:
    return (
        inner[0] >= outer[0] - slack
        and inner[1] >= outer[1] - slack
        and inner[2] <= outer[2] + slack
        and inner[3] <= outer[3] + slack
    )


def overlap(a: tuple, b: tuple) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def reads_as(text: str, value: float | None, unit: str = "") -> bool:
    """`text` is `value` rounded to the digits it shows (rate: '0.0722/s'; latency:
    '950 µs', '17.7 ms', '1.20 s' against milliseconds; 'no answers' for none)."""
    if value is None:
        return text == "no answers"
    m = re.fullmatch(r"([0-9.]+)\s*(µs|ms|s|/s)", text)
    assert m, f"unreadable figure {text!r}"
    number, shown_unit = m.groups()
    scale = {"µs": 1e-3, "ms": 1.0, "s": 1e3, "/s": 1.0}[shown_unit]
    decimals = len(number.split(".")[1]) if "." in number else 0
    return abs(float(number) * scale - value) <= 0.5 * 10**-decimals * scale + 1e-9


# --- loopback: the golden captures -----------------------------------------------------


@pytest.mark.parametrize("width", [1400, 1000])
def test_loopback_is_one_centred_node_with_a_labelled_loop_per_protocol(
    page: Page, ui_hub: Hub, api, width: int
) -> None:
    graph = api.get("/api/map", params=ALL).json()
    [node] = graph["nodes"]
    assert {(e["src"], e["dst"]) for e in graph["edges"]} == {(node["id"], node["id"])}
    page.set_viewport_size({"width": width, "height": 800})
    open_map(page, ui_hub)
    for control in ("map-group", "map-view-graph", "map-view-table", "map-fit", "map-legend"):
        expect(page.get_by_test_id(control)).to_be_in_viewport(ratio=1)
    expect(page.get_by_test_id("map-counts")).to_have_text(f"1 nodes, {len(graph['edges'])} edges")
    canvas = box(page.get_by_test_id("map-canvas"))
    mark = page.locator(f'[data-testid="map-node"][data-key="{node["id"]}"]')
    expect(mark).to_have_attribute("data-calls", str(node["calls"]))
    x0, y0, x1, y1 = box(mark.locator("circle"))
    # centred in the canvas, and as big as the busiest node of any map (not a dot)
    assert abs((x0 + x1) / 2 - (canvas[0] + canvas[2]) / 2) < 0.05 * (canvas[2] - canvas[0])
    assert abs((y0 + y1) / 2 - (canvas[1] + canvas[3]) / 2) < 0.05 * (canvas[3] - canvas[1])
    assert x1 - x0 >= 40
    expect(mark.locator("text")).to_have_text(node["workload"])
    labels = []
    for e in graph["edges"]:
        edge = page.locator(f'[data-testid="map-edge"][data-protocol="{e["protocol"]}"]')
        loop = box(edge.locator("path.line"))
        assert inside(loop, canvas), e["protocol"]
        assert loop[2] - loop[0] >= 20 and loop[3] - loop[1] >= 20  # a loop, not a tick
        label = edge.locator("text")
        expect(label).to_have_text(f"{e['protocol']} · {e['calls']}")
        labels.append(box(label))
        assert inside(labels[-1], canvas)
    # each label readable: none on another, none on the node's name
    name = box(mark.locator("text"))
    for i, a in enumerate(labels):
        assert not overlap(a, name)
        assert not any(overlap(a, b) for b in labels[i + 1 :])


def test_hovering_an_edge_shows_its_rate_and_p95(page: Page, ui_hub: Hub, api) -> None:
    graph = api.get("/api/map", params=ALL).json()
    open_map(page, ui_hub)
    tip = page.get_by_test_id("map-tip")
    for e in graph["edges"]:
        page.locator(f'[data-testid="map-edge"][data-protocol="{e["protocol"]}"] text').hover()
        expect(tip).to_contain_text(f"({e['protocol']})")
        rate, p95 = tip.get_by_test_id("tip-rate"), tip.get_by_test_id("tip-p95")
        assert reads_as(rate.inner_text(), e["per_second"]), (rate.inner_text(), e)
        assert reads_as(p95.inner_text(), e["p95_ms"]), (p95.inner_text(), e)
        expect(tip).to_contain_text(f"{e['calls']} calls, {e['errors']} errors")
    page.mouse.move(1, 1)  # away: the tip goes
    expect(tip).to_have_count(0)


def test_the_table_lists_every_edge_with_the_api_numbers_and_sorts(
    page: Page, ui_hub: Hub, api
) -> None:
    graph = api.get("/api/map", params=ALL).json()
    open_map(page, ui_hub)
    page.get_by_test_id("map-view-table").click()
    check_table(page, graph["edges"])


def check_table(page: Page, edges: list[dict]) -> None:
    """Every API edge is one row with its figures; sorting by calls, errors and p95
    orders the rows by that column."""
    rows = page.get_by_test_id("map-row")
    expect(rows).to_have_count(len(edges))
    shown = rows.evaluate_all(
        """rs => rs.map(r => [r.dataset.source, r.dataset.target, r.dataset.protocol,
            ...[...r.querySelectorAll('td.num')].map(td => td.textContent)])"""
    )
    by_key = {(e["src"], e["dst"], e["protocol"]): e for e in edges}
    assert {tuple(r[:3]) for r in shown} == set(by_key)
    for src, dst, protocol, calls, errors, rate, p95 in shown:
        e = by_key[(src, dst, protocol)]
        assert (int(calls), int(errors)) == (e["calls"], e["errors"])
        assert reads_as(rate, e["per_second"]) and reads_as(p95, e["p95_ms"]), (rate, p95, e)
    inf = float("inf")
    for column, value in (
        ("p95", lambda e: inf if e["p95_ms"] is None else e["p95_ms"]),
        ("errors", lambda e: e["errors"]),
        ("calls", lambda e: e["calls"]),
    ):
        for descending in (True, False):
            if page.get_by_test_id(f"map-sort-{column}").get_attribute("aria-sort") != (
                "descending" if descending else "ascending"
            ):
                page.get_by_test_id(f"map-sort-{column}").click()
            expect(page.get_by_test_id(f"map-sort-{column}")).to_have_attribute(
                "aria-sort", "descending" if descending else "ascending"
            )
            order = [
                value(by_key[tuple(r)])
                for r in rows.evaluate_all(
                    "rs => rs.map(r => [r.dataset.source, r.dataset.target, r.dataset.protocol])"
                )
            ]
            assert order == sorted(order, reverse=descending), (column, descending)


# --- hundreds of nodes -------------------------------------------------------------------


def test_hundreds_of_nodes_open_as_a_table_with_every_edge(page: Page, big_hub: Hub) -> None:
    with big_hub.client() as client:
        graph = client.get("/api/map", params=ALL).json()
    assert len(graph["nodes"]) == BIG_NODES > AUTO_TABLE
    open_map(page, big_hub)
    expect(page.get_by_test_id("map-counts")).to_have_text(
        f"{BIG_NODES} nodes, {len(graph['edges'])} edges"
        f" (more than {AUTO_TABLE} nodes: shown as a table)"
    )
    expect(page.get_by_test_id("map-svg")).to_have_count(0)
    check_table(page, graph["edges"])
    # the graph is a click away, every node drawn and in view
    page.get_by_test_id("map-view-graph").click()
    expect(page.get_by_test_id("map-node")).to_have_count(BIG_NODES)
    canvas = box(page.get_by_test_id("map-canvas"))
    assert all(inside(c[3:], canvas) for c in page.evaluate(CIRCLES))


def test_node_radii_follow_the_api_call_counts(page: Page, big_hub: Hub) -> None:
    with big_hub.client() as client:
        graph = client.get("/api/map", params=ALL).json()
    calls = {n["id"]: n["calls"] for n in graph["nodes"]}
    assert len(set(calls.values())) > 3  # the sizes have something to show
    open_map(page, big_hub)
    page.get_by_test_id("map-view-graph").click()
    expect(page.get_by_test_id("map-node")).to_have_count(len(calls))
    drawn = page.evaluate(CIRCLES)
    assert {key: n for key, n, *_ in drawn} == calls
    sizes: dict[int, set[float]] = {}
    for _, n, r, *_ in drawn:
        sizes.setdefault(n, set()).add(round(r, 6))
    assert all(len(r) == 1 for r in sizes.values())  # as many calls, as big
    radii = [min(sizes[n]) for n in sorted(sizes)]
    assert all(a < b for a, b in zip(radii, radii[1:], strict=False))  # more calls, bigger
    # edges: wider with the rate
    widths = page.get_by_test_id("map-edge").evaluate_all(
        "es => es.map(e => [e.dataset.source, e.dataset.target, e.dataset.protocol,"
        " +e.dataset.width])"
    )
    rate = {(e["src"], e["dst"], e["protocol"]): e["per_second"] for e in graph["edges"]}
    ordered = [w for *key, w in sorted(widths, key=lambda w: rate[tuple(w[:3])])]
    assert ordered == sorted(ordered) and ordered[-1] > ordered[0]


def test_grouping_by_namespace_draws_the_api_namespace_nodes(page: Page, big_hub: Hub) -> None:
    with big_hub.client() as client:
        by_ns = client.get("/api/map", params={**ALL, "by": "namespace"}).json()
    assert {n["kind"] for n in by_ns["nodes"]} == {"namespace"}
    open_map(page, big_hub)
    page.get_by_test_id("map-view-graph").click()
    expect(page.get_by_test_id("map-node")).to_have_count(BIG_NODES)
    page.get_by_test_id("map-group").select_option("namespace")
    nodes = page.get_by_test_id("map-node")
    expect(nodes).to_have_count(len(by_ns["nodes"]))
    drawn = nodes.evaluate_all("ns => ns.map(n => [n.dataset.key, +n.dataset.calls])")
    assert sorted(map(tuple, drawn)) == sorted((n["id"], n["calls"]) for n in by_ns["nodes"])
    edges = page.get_by_test_id("map-edge").evaluate_all(
        "es => es.map(e => [e.dataset.source, e.dataset.target, e.dataset.protocol,"
        " +e.dataset.calls])"
    )
    assert sorted(map(tuple, edges)) == sorted(
        (e["src"], e["dst"], e["protocol"], e["calls"]) for e in by_ns["edges"]
    )
    expect(page.get_by_test_id("map-counts")).to_have_text(
        f"{len(by_ns['nodes'])} nodes, {len(by_ns['edges'])} edges"
    )
    canvas = box(page.get_by_test_id("map-canvas"))
    assert all(inside(c[3:], canvas) for c in page.evaluate(CIRCLES))
    expect(page.get_by_test_id("map-legend")).to_contain_text("namespace")


def test_zoom_buttons_wheel_and_drag_then_fit_shows_every_node(page: Page, big_hub: Hub) -> None:
    open_map(page, big_hub)
    page.get_by_test_id("map-view-graph").click()
    expect(page.get_by_test_id("map-node")).to_have_count(BIG_NODES)
    svg = page.get_by_test_id("map-svg")
    canvas = box(page.get_by_test_id("map-canvas"))
    before = {c[0]: c for c in page.evaluate(CIRCLES)}
    assert all(inside(c[3:], canvas) for c in before.values())

    for _ in range(2):
        page.get_by_test_id("map-zoom-in").click()
    expect(svg).to_have_attribute("data-scale", "2.25")
    expect(page.get_by_test_id("map-scale")).to_have_text("225%")
    after = {c[0]: c for c in page.evaluate(CIRCLES)}
    key = next(iter(after))
    grown = (after[key][5] - after[key][3]) / (before[key][5] - before[key][3])
    assert grown == pytest.approx(2.25, rel=0.05)
    assert not all(inside(c[3:], canvas) for c in after.values())  # zoomed past the edges

    # drag: the drawing follows the pointer
    cx, cy = (canvas[0] + canvas[2]) / 2, (canvas[1] + canvas[3]) / 2
    page.mouse.move(cx, cy)
    page.mouse.down()
    page.mouse.move(cx + 60, cy + 40, steps=5)
    page.mouse.move(cx + 120, cy + 80, steps=5)
    page.mouse.up()
    moved = {c[0]: c for c in page.evaluate(CIRCLES)}
    assert moved[key][3] - after[key][3] == pytest.approx(120, abs=3)
    assert moved[key][4] - after[key][4] == pytest.approx(80, abs=3)

    # the wheel zooms about the pointer
    page.mouse.move(cx, cy)
    page.mouse.wheel(0, 200)
    expect(svg).to_have_attribute("data-scale", "1.5")

    page.get_by_test_id("map-fit").click()
    expect(svg).to_have_attribute("data-scale", "1")
    # fitted, 240 names would be specks: they are drawn once zooming makes them legible
    names = page.locator('[data-testid="map-node"] text')
    expect(names).to_have_count(0)
    for _ in range(6):
        page.get_by_test_id("map-zoom-in").click()
        if names.count():
            break
    expect(names).to_have_count(BIG_NODES)
    assert names.first.bounding_box()["height"] >= 8
    page.get_by_test_id("map-fit").click()
    expect(svg).to_have_attribute("data-scale", "1")
    fitted = page.evaluate(CIRCLES)
    assert all(inside(c[3:], canvas) for c in fitted)
    for c in fitted:  # back where they were
        assert c[3:] == pytest.approx(before[c[0]][3:], abs=0.5)


def test_clicking_a_node_shows_its_figures_and_brings_out_its_edges(
    page: Page, big_hub: Hub
) -> None:
    with big_hub.client() as client:
        by_ns = client.get("/api/map", params={**ALL, "by": "namespace"}).json()
    node = by_ns["nodes"][0]
    touching = {
        (e["src"], e["dst"], e["protocol"])
        for e in by_ns["edges"]
        if node["id"] in (e["src"], e["dst"])
    }
    open_map(page, big_hub)
    page.get_by_test_id("map-view-graph").click()
    page.get_by_test_id("map-group").select_option("namespace")
    expect(page.get_by_test_id("map-node")).to_have_count(len(by_ns["nodes"]))
    page.locator(f'[data-testid="map-node"][data-key="{node["id"]}"] circle').click()
    facts = page.get_by_test_id("node-facts")
    expect(facts.get_by_test_id("node-calls")).to_have_text(str(node["calls"]))
    expect(facts.get_by_test_id("node-errors")).to_have_text(str(node["errors"]))
    expect(facts.get_by_test_id("node-edge")).to_have_count(len(touching))
    drawn = page.get_by_test_id("map-edge").evaluate_all(
        "es => es.map(e => [e.dataset.source, e.dataset.target, e.dataset.protocol,"
        " e.classList.contains('picked'), e.classList.contains('faded')])"
    )
    assert {tuple(d[:3]) for d in drawn if d[3] and not d[4]} == touching
    assert all(d[4] for d in drawn if tuple(d[:3]) not in touching)
    # from the node's list to one edge's figures
    facts.get_by_test_id("node-edge").first.locator("button").click()
    expect(page.get_by_test_id("edge-facts")).to_be_visible()
    arrow = page.get_by_test_id("edge-facts").locator("svg.icon").bounding_box()
    assert arrow["height"] <= 24  # the source -> target arrow is text-sized
