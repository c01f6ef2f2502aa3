"""`tap --tls` without what TLS capture needs says what is missing in one line and
captures without TLS (the README's promise), with rights really taken away: capabilities
dropped with capsh, tracefs unmounted in a mount namespace of its own (unshare)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator

import pytest

from tests.conftest import ROOT, run_wiretide
from tests.e2e.test_live_tap import finish_tap

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="live capture needs root"),
    pytest.mark.timeout(600),
]

PORTS = iter(range(23720, 23730))  # this module's share: 23720-23729
NO_BPF = "cap_sys_admin,cap_bpf,cap_perfmon"


@pytest.fixture
def web() -> Iterator[int]:
    """A plain HTTP server on loopback: its port."""
    port = next(PORTS)
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
    )
    try:
        for _ in range(600):  # up to a minute on a busy machine
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read()
                break
            except OSError:
                subprocess.run(["sleep", "0.1"], check=True)
        yield port
    finally:
        server.kill()
        server.wait()


def _tap(wrapper: list[str], port: int, env: dict[str, str]) -> tuple[str, list[str]]:
    """`wrapper ... wiretide tap --tls` capturing `port` on lo while three GETs are made:
    (stdout, stderr lines up to `capturing on`)."""
    argv = [sys.executable, "-m", "wiretide", "tap", "--tls", "-i", "lo", "--port", str(port)]
    argv += ["--no-ui", "--workers", "1"]
    proc = subprocess.Popen(
        [*wrapper, *argv],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    early: list[str] = []
    assert proc.stderr is not None
    for line in proc.stderr:
        early.append(line.rstrip("\n"))
        if line.startswith("capturing on "):
            break
    else:
        raise AssertionError(f"tap exited {proc.wait()} before capturing: {early}")
    for i in range(3):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/?fallback={i}", timeout=30).read()
    return finish_tap(proc, interrupt=True), early


def _check(out: str, early: list[str], missing: str, env: dict[str, str], port: int) -> None:
    said = [line for line in early if "--tls" in line]
    assert len(said) == 1, early  # one line ...
    assert missing in said[0] and said[0].endswith("; capturing without TLS"), said
    assert not any("Traceback" in line for line in early), early
    assert f"TLS: not captured ({said[0].split('--tls: ', 1)[1].split('; capturing')[0]})" in out
    calls = run_wiretide(["query", "http"], env).stdout.splitlines()
    assert sum(f":{port}  GET /?fallback=" in c for c in calls) == 3, calls  # ... and it captured
    status = run_wiretide(["status"], env).stdout
    assert f"TLS:     unavailable: {said[0].split('--tls: ', 1)[1].split('; capturing')[0]}" in (
        status
    ), status


@pytest.mark.skipif(shutil.which("capsh") is None, reason="capsh is not installed")
def test_tls_without_bpf_capabilities_captures_without_tls(web: int, wt_env) -> None:
    wrapper = ["capsh", f"--drop={NO_BPF}", "--", "-c", 'exec "$0" "$@"']
    out, early = _tap(wrapper, web, wt_env)
    _check(out, early, "EPERM", wt_env, web)


@pytest.mark.skipif(shutil.which("unshare") is None, reason="unshare is not installed")
def test_tls_without_tracefs_captures_without_tls(web: int, wt_env) -> None:
    # a mount namespace of its own (private propagation): the host keeps its tracefs
    script = (
        "for m in /sys/kernel/debug/tracing /sys/kernel/tracing; do "
        'umount -l $m 2>/dev/null; done; exec "$0" "$@"'
    )
    out, early = _tap(["unshare", "-m", "sh", "-c", script], web, wt_env)
    _check(out, early, "tracefs is not mounted", wt_env, web)
