"""`wiretide tap` capturing live (root): pods stand in as network namespaces on a host
bridge, with a real HTTP server in one and curl in others; the calls they make while the
tap runs come back from `wiretide query --json` with the right addresses and ports, and
the traffic a --port or --host filter leaves out is not stored."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, run_wiretide
from tests.producers.test_afpacket import Lan, lan, start_server, stop_server  # noqa: F401

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="live capture needs root"),
    pytest.mark.timeout(600),
]

PORTS = iter(range(21760, 21780))  # this module's share of 21700-21799
CAPTURED_RE = re.compile(r"^captured (\d+) packets .*kernel drops: (\d+) of (\d+)", re.MULTILINE)
STORED_RE = re.compile(r"^stored (\d+) calls in ", re.MULTILINE)


def start_tap(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    """`wiretide tap` running live, returned once it says it is capturing."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "wiretide", "tap", *args],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    early = []
    for line in proc.stderr:
        early.append(line)
        if line.startswith("capturing on "):
            return proc
    proc.wait(30)
    raise AssertionError(f"tap exited {proc.returncode} before capturing:\n{''.join(early)}")


def finish_tap(proc: subprocess.Popen[str], interrupt: bool) -> str:
    if interrupt:
        proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=400)
    assert proc.returncode == 0, f"tap exited {proc.returncode}:\n{out}\n{err}"
    assert "Traceback" not in out + err, out + err
    return out


def curl(netns: str, url: str, data: str | None = None) -> tuple[str, int]:
    """One request with curl from inside `netns`: (response body, client port)."""
    cmd = ["ip", "netns", "exec", netns, "curl", "-sS", "--max-time", "10"]
    cmd += ["-w", "\n%{local_port}", url]
    if data is not None:
        cmd += ["--data-binary", data]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=30).stdout
    body, _, port = out.rpartition("\n")
    return body, int(port)


def stored_calls(env: dict[str, str]) -> set[tuple]:
    proc = run_wiretide(["query", "--json", "http"], env)
    calls = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    return {
        (
            c["request"]["method"],
            c["request"]["path"],
            c["src"]["ip"],
            c["src"]["port"],
            c["dst"]["ip"],
            c["dst"]["port"],
            c["response"]["status"] if c["response"] else None,
        )
        for c in calls
    }


def test_live_tap_on_a_pod_interface_stores_its_calls(
    lan: Lan,  # noqa: F811
    wt_env: dict[str, str],
) -> None:
    """Captured on the host end of the server pod's veth, stopped with Ctrl-C (SIGINT):
    the calls to the asked port are all stored, the ones to another port are not."""
    srv, cli = lan.add_pod("s"), lan.add_pod("c")
    wanted, other = next(PORTS), next(PORTS)
    servers = [start_server(srv, p, lan.netns("s")) for p in (wanted, other)]
    try:
        tap = start_tap(["--interface", lan.host_veth("s"), "--port", str(wanted)], wt_env)
        expected = set()
        for i in range(4):
            path = f"/live/{i}"
            body, port = curl(lan.netns("c"), f"http://{srv}:{wanted}{path}")
            assert body == f"you asked for {path}"
            expected.add(("GET", path, cli, port, srv, wanted, 200))
        body, port = curl(lan.netns("c"), f"http://{srv}:{wanted}/orders", data="{}")
        expected.add(("POST", "/orders", cli, port, srv, wanted, 200))
        for i in range(3):
            curl(lan.netns("c"), f"http://{srv}:{other}/not-asked/{i}")
        out = finish_tap(tap, interrupt=True)
    finally:
        for s in servers:
            stop_server(s)
    captured = CAPTURED_RE.search(out)
    assert captured, out
    assert int(captured.group(2)) == 0, f"kernel drops: {out}"
    stored = STORED_RE.search(out)
    assert stored and int(stored.group(1)) == len(expected), out
    assert stored_calls(wt_env) == expected


def test_live_tap_on_every_interface_with_a_host_filter(
    lan: Lan,  # noqa: F811
    wt_env: dict[str, str],
) -> None:
    """All interfaces (the bridge forwards between pods: each packet passes two veths),
    `--host` keeps one client's calls, `--for` ends the capture: each call stored once."""
    srv, cli = lan.add_pod("s"), lan.add_pod("c")
    lan.add_pod("o")
    port = next(PORTS)
    server = start_server(srv, port, lan.netns("s"))
    try:
        tap = start_tap(["--quiet", "--host", cli, "--for", "15"], wt_env)
        expected = set()
        for i in range(3):
            path = f"/everywhere/{i}"
            _, client_port = curl(lan.netns("c"), f"http://{srv}:{port}{path}")
            expected.add(("GET", path, cli, client_port, srv, port, 200))
        for i in range(3):
            curl(lan.netns("o"), f"http://{srv}:{port}/other-client/{i}")
        out = finish_tap(tap, interrupt=False)
    finally:
        stop_server(server)
    stored = STORED_RE.search(out)
    assert stored and int(stored.group(1)) == len(expected), out
    assert stored_calls(wt_env) == expected


def test_live_tap_errors_are_one_line(wt_env: dict[str, str], tmp_path: Path) -> None:
    cases = [
        ["--interface", "wt-none0", "--for", "1"],
        ["--netns", "wt-no-such-ns", "--for", "1"],
        ["--host", "not-an-ip", "--for", "1"],
        ["--pcap", str(tmp_path / "x.pcap"), "--interface", "lo"],
    ]
    for args in cases:
        proc = run_wiretide(["tap", *args], wt_env, check=False)
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        assert proc.returncode == 2 and len(lines) == 1, (args, proc.stderr)
        assert lines[0].startswith("wiretide: error: "), lines
    if subprocess.run(["capsh", "--help"], capture_output=True).returncode == 0:
        cmd = [sys.executable, "-m", "wiretide", "tap", "--for", "1"]
        proc = subprocess.run(
            ["capsh", "--drop=cap_net_raw", "--", "-c", " ".join(cmd)],
            env=wt_env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 2, proc.stderr
        assert (
            proc.stderr.strip().splitlines() == [proc.stderr.strip().splitlines()[0]]
            and "CAP_NET_RAW" in proc.stderr
        ), proc.stderr
