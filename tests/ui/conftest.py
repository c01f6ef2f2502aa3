"""Browser tests: real headless Chromium (Debian's /usr/bin/chromium) driven by Playwright
over the hub serving the built UI, on a data dir that `wiretide tap --pcap` filled from
golden captures. Every test leaves a screenshot in test-artifacts/ui/<test>.png (the
`browser` and `page` fixtures are tests/conftest.py's, shared with every browser test)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import CHROMIUM, GOLDEN, ROOT, pipeline_env, run_wiretide
from tests.hub.conftest import Hub, start_hub

playwright = pytest.importorskip("playwright.sync_api", reason="pip install playwright")

UI_DIST = ROOT / "wiretide" / "hub" / "ui_dist" / "index.html"
CAPTURES = [
    GOLDEN / "e2e" / "http_basic.pcap",
    GOLDEN / "protocols" / "websocket" / "basic.pcap",
    GOLDEN / "protocols" / "redis" / "basic.pcap",
    GOLDEN / "protocols" / "kafka" / "basic.pcap",
]

# REFERENCE.md's latency rule, aimed at the HTTP capture (/api/users answers in 0.6 to
# 4.8 ms there): its calls get verdicts, the list marks them green or red.
LIMIT_MS = 3
RULES = f"""\
rules:
  - name: Users-Latency-SLO
    type: latency
    path: ^/api/users
    latency: {LIMIT_MS}
"""

pytestmark = [
    pytest.mark.skipif(
        shutil.which(CHROMIUM) is None, reason=f"{CHROMIUM} missing: apt-get install chromium"
    ),
    pytest.mark.skipif(not UI_DIST.is_file(), reason="UI not built: cd ui && npm run build"),
]


@pytest.fixture(scope="session")
def ui_env(kafka: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A data dir holding the calls of a few golden captures, stored by `wiretide tap`."""
    top = tmp_path_factory.mktemp("ui")
    env = pipeline_env(kafka, top / "data")
    rules = top / "rules.yaml"
    rules.write_text(RULES)
    for pcap in CAPTURES:
        run_wiretide(["tap", "--pcap", str(pcap), "--quiet"], dict(env, WIRETIDE_RULES=str(rules)))
    return env


@pytest.fixture(scope="session")
def ui_hub(ui_env: dict[str, str]) -> Iterator[Hub]:
    running = start_hub(ui_env)
    yield running
    running.stop()


@pytest.fixture(scope="session")
def api(ui_hub: Hub) -> Iterator[httpx.Client]:
    with ui_hub.client() as client:
        yield client
