"""Fixtures the deploy tests share."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.deploy._support import find_helm


@pytest.fixture
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home with no kubeconfig and no cached helm; helm only through $WIRETIDE_HELM."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for name in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "WIRETIDE_HELM"):
        monkeypatch.delenv(name, raising=False)
    helm = find_helm()
    if helm:
        monkeypatch.setenv("WIRETIDE_HELM", helm)
    return tmp_path
