"""Coverage facts without eBPF: the report (schemas/coverage.py) and how real running TLS
programs are described (producers/tls/coverage.py): the library and version hooked, or
the reason not (stripped Go binary, static OpenSSL without symbols, Java)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from producers.tls import coverage
from producers.tls.targets import process_targets
from schemas.coverage import (
    CoverageReport,
    NodeCoverage,
    TlsProcess,
    UndecryptedFlows,
    decode_node_coverage,
    encode_node_coverage,
    tls_summary,
)
from tests.telemetry.coverage_peers import (
    build_go,
    build_static_openssl,
    java_client,
)

PY_SSL = "import ssl, sys; ssl.create_default_context(); print('ready', flush=True); input()"


def _node(name: str, *procs: TlsProcess, updated: int = 1) -> NodeCoverage:
    return NodeCoverage(
        name, updated, ("afpacket", "tls-uprobes"), "lo", "on", "", 10, 2, 99, procs
    )


def test_node_record_round_trips_and_report_joins_nodes_pods_and_flows() -> None:
    hooked = TlsProcess(
        7, "api", "OpenSSL", True, "3.0.19", "/lib/libssl.so.3", pod="a", namespace="shop"
    )
    stripped = TlsProcess(8, "x", "Go", False, "1.26.8", "/x", coverage.STRIPPED_GO, "/usr/bin/x")
    old, new = _node("n1", updated=1), _node("n1", hooked, stripped, updated=2)
    assert decode_node_coverage(encode_node_coverage(new)) == new
    flows = [
        UndecryptedFlows("n1", "shop/a", "10.0.0.9:443", 3, 3000),
        UndecryptedFlows("n2", "10.0.0.7", "shop/b", 1, 10),
    ]
    report = CoverageReport.build([old, new, _node("n2")], flows)
    assert [n.node for n in report.nodes] == ["n1", "n2"]
    assert report.nodes[0].processes == (hooked, stripped)  # the newest record wins
    assert report.undecrypted_totals() == (4, 3010)
    assert report.undecrypted_totals("n1") == (3, 3000)
    pods = {p.pod: p for p in report.pods()}
    assert pods["shop/a"].processes == (hooked,) and pods["shop/a"].undecrypted_flows == 3
    assert pods["shop/b"].undecrypted_bytes == 10
    assert CoverageReport.from_dict(report.to_dict()) == report


def test_tls_summary_names_libraries_and_reasons() -> None:
    procs = [
        TlsProcess(1, "py", "OpenSSL", True, "3.0.19"),
        TlsProcess(2, "py", "OpenSSL", True, "3.0.11"),
        TlsProcess(3, "srv", "Go", True, "1.26.8"),
        TlsProcess(4, "x", "Go", False, "1.26.8", "/usr/bin/x", coverage.STRIPPED_GO, "/usr/bin/x"),
    ]
    assert tls_summary(procs, 12) == (
        "TLS: 3 processes hooked (Go 1.26: 1, OpenSSL 3.0: 2), "
        "1 not (stripped Go binary: /usr/bin/x), 12 flows undecrypted"
    )
    assert tls_summary([], None) == "TLS: 0 processes hooked"


@pytest.fixture
def running() -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for p in procs:
        p.kill()
        p.wait()


def _start(argv: list[str], procs: list[subprocess.Popen[str]]) -> int:
    p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    procs.append(p)
    assert p.stdout is not None
    line = p.stdout.readline()
    assert line.startswith("ready"), f"{argv} did not start: {line!r}"
    return p.pid


def _describe(pid: int) -> list[TlsProcess]:
    targets = process_targets(pid)
    return coverage.hooked(pid, targets, {}) if targets else coverage.not_hooked(pid)


def test_each_tls_program_is_named_with_its_library_or_reason(tmp_path: Path, running) -> None:
    go = build_go(tmp_path / "tlsgo", stripped=False)
    go_stripped = build_go(tmp_path / "tlsgo-stripped", stripped=True)
    static = build_static_openssl(tmp_path, stripped=False)
    static_stripped = build_static_openssl(tmp_path, stripped=True)
    url = "https://127.0.0.1:1/echo"
    pids = {
        "python": _start([sys.executable, "-c", PY_SSL], running),
        "go": _start([go, "client", url, "/dev/null", "{}"], running),
        "go-stripped": _start([go_stripped, "client", url, "/dev/null", "{}"], running),
        "static": _start([static], running),
        "static-stripped": _start([static_stripped], running),
    }
    seen = {name: _describe(pid) for name, pid in pids.items()}
    go_version = (
        subprocess.run(["go", "version"], capture_output=True, text=True, check=True)
        .stdout.split()[2]
        .removeprefix("go")
    )

    (py,) = seen["python"]
    assert (py.library, py.hooked, py.reason) == ("OpenSSL", True, "")
    assert py.version.startswith("3.") and py.path.endswith(".so.3"), py
    (g,) = seen["go"]
    assert (g.library, g.hooked, g.version, g.path) == ("Go", True, go_version, go)
    (gs,) = seen["go-stripped"]
    assert (gs.library, gs.hooked, gs.version) == ("Go", False, go_version)
    assert gs.short_reason == "stripped Go binary" and gs.exe == go_stripped
    (st,) = seen["static"]
    assert (st.library, st.hooked, st.path) == ("OpenSSL", True, static)
    assert st.version.startswith("3.")
    (ss,) = seen["static-stripped"]
    assert (ss.library, ss.hooked) == ("OpenSSL", False)
    assert ss.short_reason == "static OpenSSL without symbols" and ss.version == st.version


def test_a_java_client_is_reported_as_unsupported(tmp_path: Path, running) -> None:
    argv = java_client(tmp_path)
    if argv is None:
        pytest.skip("no JRE here")
    pid = _start(argv, running)
    deadline = time.monotonic() + 60
    facts: list[TlsProcess] = []
    while time.monotonic() < deadline and not facts:
        facts = coverage.not_hooked(pid)  # libjvm is mapped as the JVM starts
    assert [(f.library, f.hooked, f.short_reason) for f in facts] == [
        ("Java", False, "unsupported library")
    ]
    assert "JSSE" in facts[0].reason and facts[0].path.endswith("libjvm.so")


def test_status_before_any_report_says_so_in_a_line(wt_env: dict[str, str]) -> None:
    from tests.conftest import run_wiretide

    out = run_wiretide(["status"], wt_env)
    assert out.stdout.startswith("no node has reported its coverage yet"), out.stdout
    assert "Traceback" not in out.stdout + out.stderr
    bad = run_wiretide(["status", "--hours", "0"], wt_env, check=False)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1, bad.stderr
    assert "--hours" in bad.stderr
