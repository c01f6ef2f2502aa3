"""A load capture shared by the end-to-end tests that need volume."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT


@pytest.fixture(scope="session")
def load_capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About 30,000 HTTP calls on 8 keep-alive connections: nginx loaded by wrk on
    loopback, recorded by tcpdump (bench/make_capture.sh), at test time."""
    out = tmp_path_factory.mktemp("capture") / "load.pcap"
    subprocess.run(
        ["bash", str(ROOT / "bench" / "make_capture.sh"), "--calls", "30000", str(out), "20", "8"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return out
