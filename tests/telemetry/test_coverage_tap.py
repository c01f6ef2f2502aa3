"""Coverage end to end (root, eBPF): `wiretide tap --tls` on loopback with real HTTPS
servers and clients - Python (OpenSSL), Go, and a stripped Go binary that cannot be
hooked. The tap's TLS line, `wiretide status`, /api/coverage and the stored calls must
each name what was hooked, what was not and why, and what went undecrypted; a
connection whose plaintext was captured is not also stored as a `tcp` row.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_ports, run_wiretide, stop_all
from tests.e2e.test_live_tap import finish_tap, start_tap
from tests.hub.conftest import start_hub
from tests.producers.test_tls import PY_CLIENT, PY_SERVER
from tests.telemetry.coverage_peers import build_go

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="TLS capture needs root"),
    pytest.mark.timeout(900),
]

# Free ports of this run: two runs on one machine must not capture each other's calls.
PY_PORT, GO_PORT, STRIPPED_PORT, POD_PORT, STATIC_PORT, AGENT_PORT = free_ports(6)


def _ebpf_ready() -> None:
    from producers.tls import probe_ebpf

    support = probe_ebpf()
    if not support.tls:
        pytest.skip("eBPF TLS capture unavailable here: " + "; ".join(support.problems))


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[str]]]:
    out: list[subprocess.Popen[str]] = []
    yield out
    stop_all(out)


def _spawn(argv: list[str], procs: list[subprocess.Popen[str]]) -> subprocess.Popen[str]:
    p = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    procs.append(p)
    assert p.stdout is not None
    line = p.stdout.readline()
    assert line.startswith("ready"), f"{argv[0]} did not start: {line!r}"
    return p


def _run_client(argv: list[str], procs: list[subprocess.Popen[str]]) -> str:
    """Start a client (it says ready, waits for a line), let it go, wait for it."""
    client = _spawn(argv, procs)
    out, err = client.communicate("go\n", timeout=120)
    assert client.returncode == 0, f"{argv[0]} failed: {out} {err}"
    return out


def _hub(env: dict[str, str], procs: list[subprocess.Popen[str]]) -> str:
    """`wiretide hub` over the tap's data dir; its base URL once it listens."""
    hub = start_hub(env)
    procs.append(hub.proc)
    return hub.url


def test_tap_tls_coverage_names_hooked_unhooked_and_undecrypted(
    cert: tuple[str, str], tmp_path: Path, wt_env: dict[str, str], procs
) -> None:
    _ebpf_ready()
    crt, key = cert
    go = build_go(tmp_path / "tlsgo", stripped=False)
    stripped = build_go(tmp_path / "tlsgo-stripped", stripped=True)
    py_server = _spawn([sys.executable, "-c", PY_SERVER, str(PY_PORT), crt, key], procs)
    go_server = _spawn([go, "server", str(GO_PORT), crt, key], procs)
    bare_server = _spawn([stripped, "server", str(STRIPPED_PORT), crt, key], procs)
    ports = ["--port", str(PY_PORT), "--port", str(GO_PORT), "--port", str(STRIPPED_PORT)]
    tap = start_tap(["--tls", "-i", "lo", *ports, "--no-ui", "--workers", "1"], wt_env)
    try:
        time.sleep(1)  # the TLS capture's first scan has hooked the servers by now
        _run_client([sys.executable, "-c", PY_CLIENT, str(PY_PORT), crt], procs)
        url = f"https://127.0.0.1:{GO_PORT}/echo"
        _run_client([go, "client", url, crt, '{"go": 1}'], procs)
        url = f"https://127.0.0.1:{STRIPPED_PORT}/echo"
        _run_client([stripped, "client", url, crt, '{"bare": 1}'], procs)
        time.sleep(1)
    finally:
        out = finish_tap(tap, interrupt=True)
    go_version = (
        subprocess.run(["go", "version"], capture_output=True, text=True, check=True)
        .stdout.split()[2]
        .removeprefix("go")
    )
    minor = ".".join(go_version.split(".")[:2])

    line = [ln for ln in out.splitlines() if ln.startswith("TLS: ")]
    assert line, out
    assert "OpenSSL 3." in line[0] and f"Go {minor}" in line[0], line
    # Every process on the host is traced, and the line names at most 3 binaries per
    # reason: another run's stripped Go binary may stand in ours' place. Which process was
    # not hooked, and why, is asserted by pid on `wiretide status --json` below.
    assert re.search(r"\d+ not \(.*stripped Go binary: ", line[0]), line
    assert line[0].endswith(", 1 flow undecrypted"), line  # the stripped pair's only

    # The stored calls: plaintext calls of the hooked pairs and no `tcp` row for them;
    # the stripped pair's connection is one `tcp` row flagged encrypted.
    calls = [json.loads(x) for x in run_wiretide(["query", "--json"], wt_env).stdout.splitlines()]
    mine = [c for c in calls if c["dst"]["port"] in (PY_PORT, GO_PORT, STRIPPED_PORT)]
    rows = sorted((c["dst"]["port"], c["protocol"], c["tls"]) for c in mine)
    assert rows == sorted(
        [
            (PY_PORT, "http", True),
            (PY_PORT, "http", True),
            (GO_PORT, "http", True),
            (STRIPPED_PORT, "tcp", False),
        ]
    ), rows
    (raw,) = [c for c in mine if c["protocol"] == "tcp"]
    assert "encrypted" in raw["flags"], raw

    # wiretide status: one block for this node, naming each server process.
    status = run_wiretide(["status"], wt_env).stdout
    node = socket.gethostname()
    assert f"node {node}" in status, status
    assert "capture: AF_PACKET on interface 'lo'; TLS uprobes" in status, status
    assert re.search(r"hooked OpenSSL 3\.\S+  /\S+/libssl\.so\.3: \d+ process", status), status
    assert f"hooked Go {go_version}  {go}: 1 process (tlsgo {go_server.pid})" in status
    assert "undecrypted TLS: 1 flows" in status, status
    # The human list shows 20 unhooked processes: on a busy host (browsers, JVMs) ours
    # may be among "... and N more", so the process is checked in the full list.
    (listed,) = [n for n in json.loads(run_wiretide(["status", "--json"], wt_env).stdout)["nodes"]
                 if n["node"] == node]  # fmt: skip
    (bare,) = [p for p in listed["processes"] if p["pid"] == bare_server.pid]
    assert (bare["hooked"], bare["library"], bare["exe"]) == (False, "Go", stripped)
    assert bare["reason"].startswith("stripped Go binary") and bare["version"].startswith(minor)

    # /api/coverage: the same facts as JSON.
    base = _hub(wt_env, procs)
    with urllib.request.urlopen(base + "/api/coverage", timeout=60) as answer:
        cov = json.load(answer)
    assert cov["problems"] == [] and cov["undecrypted_flows"] == 1, cov
    (mynode,) = [n for n in cov["nodes"] if n["node"] == node]
    assert mynode["tls"] == "on" and mynode["sources"] == ["afpacket", "tls-uprobes"]
    by_pid = {p["pid"]: p for p in mynode["processes"]}
    assert by_pid[go_server.pid]["hooked"] and by_pid[go_server.pid]["version"] == go_version
    assert by_pid[py_server.pid]["library"] == "OpenSSL"
    bare = by_pid[bare_server.pid]
    assert (bare["hooked"], bare["library"]) == (False, "Go")
    assert bare["reason"].startswith("stripped Go binary (")
    (flow,) = cov["undecrypted"]
    assert flow["server"] == f"127.0.0.1:{STRIPPED_PORT}" and flow["bytes"] > 0


def test_a_pods_tls_process_is_reported_under_its_pod(cert: tuple[str, str], procs) -> None:
    """A real OpenSSL process in a cgroup named after a container id (as a runtime puts
    it): the pod's process is hooked and the report lists it under the pod."""
    from producers.live import node_coverage
    from producers.tls import TlsCapture
    from schemas.coverage import CoverageReport
    from wiretide.kube.pids import pods_of_pids

    _ebpf_ready()
    root = Path("/sys/fs/cgroup/pids")
    if not root.is_dir() or not os.access(root, os.W_OK):
        pytest.skip("no writable cgroup (pids controller) to stand in for a container")
    cid = "c0" * 32
    group = root / f"wt-coverage-{cid}"
    group.mkdir(exist_ok=True)
    try:
        app = _spawn([sys.executable, "-c", PY_SERVER, str(POD_PORT), *cert], procs)
        (group / "cgroup.procs").write_text(str(app.pid))
        pod = {
            "metadata": {"name": "api-7", "namespace": "shop"},
            "spec": {"nodeName": "node-a"},
            "status": {"containerStatuses": [
                {"containerID": f"containerd://{cid}", "state": {"running": {}}}]},
        }  # fmt: skip
        owners = pods_of_pids([pod], "node-a")
        assert owners == {app.pid: ("shop", "api-7")}
        with TlsCapture(pids=sorted(owners)) as cap:
            cap.set_pods(owners)
            facts = node_coverage([cap], "node-a", tls=True)
        report = CoverageReport.build([facts])
        (mine,) = [p for p in report.pods() if p.pod == "shop/api-7"]
        assert [(p.pid, p.library, p.hooked) for p in mine.processes] == [
            (app.pid, "OpenSSL", True)
        ]
    finally:
        stop_all(procs)
        group.rmdir()


def test_capture_names_static_openssl_stripped_go_and_java(
    cert: tuple[str, str], tmp_path: Path, procs
) -> None:
    """TlsCapture watching every process: a static OpenSSL client with symbols is hooked
    (and its call captured), the same stripped is not, nor a stripped Go binary or a
    Java TLS client; each with its reason."""
    from producers.tls import TlsCapture
    from tests.telemetry.coverage_peers import build_static_openssl, java_client

    _ebpf_ready()
    crt, key = cert
    server = _spawn([sys.executable, "-c", PY_SERVER, str(STATIC_PORT), crt, key], procs)
    static = build_static_openssl(tmp_path, stripped=False)
    bare_static = build_static_openssl(tmp_path, stripped=True)
    bare_go = build_go(tmp_path / "tlsgo-stripped", stripped=True)
    java = java_client(tmp_path)
    with TlsCapture(rescan_interval_s=0.5) as cap:
        clients = {
            "static": _spawn([static, str(STATIC_PORT)], procs),
            "bare_static": _spawn([bare_static], procs),
            "bare_go": _spawn([bare_go, "client", "https://127.0.0.1:1/", crt, "{}"], procs),
        }
        if java is not None:
            clients["java"] = _spawn(java, procs)
        wanted = {p.pid for p in clients.values()}
        deadline = time.monotonic() + 120
        seen: dict[int, list] = {}
        segments = []
        while time.monotonic() < deadline and set(seen) != wanted:
            segments += cap.poll(0.2)
            seen = {}
            for fact in cap.processes():
                if fact.pid in wanted:
                    seen.setdefault(fact.pid, []).append(fact)
        out, _ = clients["static"].communicate("go\n", timeout=60)
        assert int(out.strip()) > 0  # it read the server's answer
        end = time.monotonic() + 30
        while time.monotonic() < end and not any(b"GET /static" in s.payload for s in segments):
            segments += cap.poll(0.2)
    assert any(b"GET /static" in s.payload for s in segments), "static client not captured"
    assert server.poll() is None
    got = {name: seen.get(p.pid, []) for name, p in clients.items()}
    (st,) = got["static"]
    assert (st.library, st.hooked, st.path) == ("OpenSSL", True, static)
    (bs,) = got["bare_static"]
    assert (bs.hooked, bs.short_reason) == (False, "static OpenSSL without symbols")
    (bg,) = got["bare_go"]
    assert (bg.library, bg.hooked, bg.short_reason) == ("Go", False, "stripped Go binary")
    if java is not None:
        (jv,) = got["java"]
        assert (jv.library, jv.hooked, jv.short_reason) == ("Java", False, "unsupported library")


def test_agent_publishes_its_coverage_and_says_its_tls_line(wt_env: dict[str, str]) -> None:
    """`wiretide agent --tls` (a cluster's node agent): its record is on the coverage
    topic, which `wiretide status` reads without any store."""
    from schemas.config import Settings
    from wiretide.coverage import read_nodes

    _ebpf_ready()
    env = dict(wt_env, WIRETIDE_NODE="agent-node-1")
    args = ["agent", "--tls", "-i", "lo", "--port", str(AGENT_PORT), "--for", "4"]
    out = run_wiretide(args, env).stdout
    assert re.search(r"^TLS: \d+ process(es)? hooked", out, re.MULTILINE), out
    settings = Settings(kafka=env["WIRETIDE_KAFKA"], prefix=env["WIRETIDE_PREFIX"])
    (node,) = [n for n in read_nodes(settings) if n.node == "agent-node-1"]
    assert node.tls == "on" and node.sources == ("afpacket", "tls-uprobes")
    assert node.interfaces == "interface 'lo'"
    status = run_wiretide(["status"], env).stdout
    assert "node agent-node-1" in status and "TLS:     on," in status, status
