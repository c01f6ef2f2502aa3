"""Every golden protocol capture (tests/golden/protocols/<protocol>/<case>.pcap, recorded
from real clients and servers) dissects to exactly its reviewed `.calls.json`."""

from __future__ import annotations

import json

import pytest

from tests.golden.protocols.dissect import dissect_pcap, expected_path, golden_cases


@pytest.mark.parametrize("pcap", golden_cases(), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_capture_dissects_to_its_golden_calls(pcap):
    expected = json.loads(expected_path(pcap).read_text())
    assert dissect_pcap(pcap) == expected
