"""The UI's Replay page in headless Chromium, over a hub that holds a store of recorded
v1 calls while `wiretide replay` sends them at v2 (its results reach the hub by Kafka)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from tests.conftest import CHROMIUM, pipeline_env, run_wiretide
from tests.hub.conftest import start_hub
from tests.replay.conftest import Recording
from tests.replay.test_replay_e2e import CALLS, CHANGED, _targets

pytest.importorskip("playwright.sync_api", reason="pip install playwright")
pytestmark = pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason=f"{CHROMIUM} missing")


def test_replay_page_lists_runs_and_shows_diffs_side_by_side(
    v1_recording: Recording, v2_ports, kafka: str, tmp_path: Path, page
):
    env = pipeline_env(kafka, tmp_path / "data")
    run_wiretide(["tap", "--quiet", "--pcap", str(v1_recording.pcap)], env)
    hub = start_hub(env)
    try:
        args = ["replay", *_targets(v1_recording, v2_ports), "--speed", "max", "--copies", "3"]
        summary = json.loads(run_wiretide([*args, "--json", "--run-id", "ui-run"], env).stdout)
        assert summary["verdicts"]["changed"] == 3 * CHANGED
        page.set_default_timeout(60_000)  # (script errors and the screenshot: the fixture)
        page.goto(f"{hub.url}/?token={hub.token or ''}")
        page.get_by_test_id("tab-replay").click()
        page.locator('[data-testid="replay-run"][data-run="ui-run"]').click()
        counts = page.get_by_test_id("replay-counts")
        counts.wait_for()
        assert counts.get_attribute("data-changed") == str(3 * CHANGED)
        assert counts.get_attribute("data-matched") == str(3 * (CALLS - CHANGED))
        assert "recorded" in page.get_by_test_id("latency-recorded").inner_text()
        items3 = page.locator('[data-testid="replay-call"][data-path="/items/3"]')
        # its two recorded calls, each one entry for the 3 copies that changed alike
        assert items3.count() == 2 and items3.first.get_attribute("data-copies") == "3"
        assert "copies 0-2" in items3.first.inner_text()
        call = items3.first
        call.locator("button").click()
        row = call.locator('tr[data-where="body:$.price"]')
        assert re.sub(r"\s+", " ", row.inner_text()).strip() == "body:$.price 30 35"
        assert '"price": 30' in call.get_by_test_id("answer-recorded").inner_text()
        assert '"price": 35' in call.get_by_test_id("answer-replayed").inner_text()
    finally:
        hub.stop()
