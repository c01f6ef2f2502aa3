"""The hub as a user runs it: `wiretide tap --pcap` stores a real capture, then the hub
is started on that data dir as its own process and called over HTTP and WebSocket."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx
import pytest

from tests.conftest import GOLDEN, ROOT, pipeline_env, run_wiretide

PCAP = GOLDEN / "e2e" / "http_basic.pcap"
EXPECTED = json.loads((GOLDEN / "e2e" / "http_basic.expected.json").read_text())


@dataclass
class Hub:
    proc: subprocess.Popen[str]
    url: str
    token: str | None
    log: IO[str]
    banner: list[str] = field(default_factory=list)

    def client(self, token: str | None = None, **kw: object) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60, **kw)

    def stop(self) -> str:
        """Stop it like Ctrl-C would; its stderr."""
        if self.proc.poll() is None:
            self.proc.send_signal(2)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.seek(0)
        return self.log.read()


def start_hub(env: dict[str, str], *args: str, listen: str = "127.0.0.1:0") -> Hub:
    """Run `wiretide hub` and wait for its banner; fail with its stderr if it exits
    instead."""
    # stderr to a file: a pipe nobody reads would stall a hub that logs a lot
    log = tempfile.TemporaryFile("w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "wiretide", "hub", "--listen", listen, *args],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    banner, token = [], None
    for line in proc.stdout:
        banner.append(line.rstrip("\n"))
        if "token (" in line:
            token = line.rsplit(": ", 1)[1].strip()
        if "listening on http://" in line:
            address = line.split("http://", 1)[1].split()[0]
            port = address.rsplit(":", 1)[1]
            return Hub(proc, f"http://127.0.0.1:{port}", token, log, banner)
    proc.wait()
    log.seek(0)
    raise AssertionError(f"hub exited {proc.returncode}: {log.read()}")


def run_hub_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run the hub expecting it to refuse to start."""
    return run_wiretide(["hub", *args], env, timeout=120, check=False)


@pytest.fixture(scope="session")
def stored_env(kafka: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A data dir holding the calls of the golden HTTP capture, stored by `wiretide tap`."""
    env = pipeline_env(kafka, tmp_path_factory.mktemp("hub") / "data")
    run_wiretide(["tap", "--pcap", str(PCAP), "--quiet"], env)
    return env


@pytest.fixture(scope="session")
def hub(stored_env: dict[str, str]) -> Iterator[Hub]:
    """One hub on loopback over the stored capture, for the whole session."""
    running = start_hub(stored_env)
    yield running
    running.stop()


TOKEN = "s3cret-token"


@pytest.fixture(scope="session")
def token_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    """Listening on every interface, over an empty store, with a token the operator chose."""
    env = empty_env(tmp_path_factory.mktemp("auth"), WIRETIDE_HUB_TOKEN=TOKEN)
    running = start_hub(env, listen="0.0.0.0:0")
    yield running
    running.stop()


@pytest.fixture(scope="session")
def all_calls(hub: Hub) -> list[dict]:
    """Every stored call in full (detail of each listed id)."""
    with hub.client() as c:
        page = c.get("/api/calls", params={"limit": 1000}).json()
        return [c.get(f"/api/calls/{s['id']}").json() for s in page["calls"]]


def empty_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """Environment for a hub over a fresh, empty data dir (no Kafka needed)."""
    env = pipeline_env("127.0.0.1:1", tmp_path / "data")
    env.pop("WIRETIDE_KAFKA")
    env.pop("WIRETIDE_HUB_TOKEN", None)
    env.update(extra)
    return env
