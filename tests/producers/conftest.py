from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def fuzz_path(tmp_path_factory) -> Path:
    """Where a fuzz test writes each mutated capture (one file, rewritten per example)."""
    return tmp_path_factory.mktemp("fuzz") / "mutant"
