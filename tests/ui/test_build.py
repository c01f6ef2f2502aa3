"""The UI the hub serves (wiretide/hub/ui_dist, committed) is the build of ui/'s sources:
`npm ci && npm run build` from the lock file gives the same files, byte for byte."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT

UI = ROOT / "ui"
DIST = ROOT / "wiretide" / "hub" / "ui_dist"


def _files(top: Path) -> dict[str, bytes]:
    return {str(p.relative_to(top)): p.read_bytes() for p in sorted(top.rglob("*")) if p.is_file()}


@pytest.mark.skipif(shutil.which("npm") is None, reason="npm is not installed")
def test_committed_ui_is_the_build_of_its_sources(tmp_path: Path) -> None:
    work = tmp_path / "ui"
    shutil.copytree(UI, work, ignore=shutil.ignore_patterns("node_modules"))
    out = tmp_path / "dist"
    for cmd in (
        ["npm", "ci", "--no-audit", "--no-fund"],
        ["npm", "run", "build", "--", "--outDir", str(out)],
    ):
        proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"{' '.join(cmd)}:\n{proc.stdout}\n{proc.stderr}"
    built, committed = _files(out), _files(DIST)
    assert sorted(built) == sorted(committed), "rebuild the UI: cd ui && npm run build"
    assert built == committed, "rebuild the UI: cd ui && npm run build"
