"""Every input a user can give the CLI fails in one line on stderr with exit code 2, never
a traceback, and creates or loses nothing; a reader closing stdout ends it quietly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from schemas.records import ApiCall
from sinks.clickhouse.connect import open_store
from sinks.clickhouse.writer import CallWriter
from tests.conftest import GOLDEN, ROOT, run_wiretide

PCAP = GOLDEN / "e2e" / "http_basic.pcap"
# Root ignores file permissions; without these capabilities it is held to them.
AS_PLAIN_USER = [
    "setpriv",
    "--bounding-set",
    "-dac_override,-dac_read_search",
    "--inh-caps",
    "-dac_override,-dac_read_search",
]


def _env(tmp_path: Path, **more: str) -> dict[str, str]:
    """No Kafka, no data dir from the caller; HOME inside the test, to see what lands there."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WIRETIDE_")}
    return dict(env, HOME=str(tmp_path / "home"), PYTHONUNBUFFERED="1", **more)


def _one_line_failure(proc: subprocess.CompletedProcess[str], *words: str) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr
    for word in words:
        assert word in proc.stderr, proc.stderr


def _fill(data: Path, n: int) -> None:
    now = time.time_ns() - 3600 * 10**9
    calls = [
        ApiCall(
            call_id=f"call-{i:06d}", protocol="http", ts_ns=now + i * 1_000_000,
            src_ip="10.0.0.1", src_port=40000 + i % 1000, dst_ip="10.0.0.2", dst_port=8080,
            flow_id=f"tcp:10.0.0.1:{40000 + i % 1000}-10.0.0.2:8080", node="n",
            source="afpacket", method="GET", path=f"/items/{i}", status=200,
        )
        for i in range(n)
    ]  # fmt: skip
    with open_store(f"chdb://{data / 'chdb'}", ttl_days=0) as store:
        CallWriter(store).write(calls)


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir holding 5,000 calls: more than a pipe buffer of output, several blocks."""
    data = tmp_path_factory.mktemp("stored")
    _fill(data, 5000)
    return data


@pytest.mark.parametrize(
    "command",
    [
        ["tap", "--pcap", str(PCAP), "--no-ui"],
        ["agent", "--pcap", str(PCAP)],
        ["broker", "start"],
        ["sink"],
        ["worker"],
    ],
    ids=lambda c: c[0],
)
def test_a_data_dir_that_cannot_be_used_is_one_line(tmp_path: Path, command: list[str]) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("not a dir")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    env = _env(tmp_path)
    cases = {
        str(a_file): "is a file",
        str(a_file / "below"): "a part of that path is a file",
        str(locked): "permission denied",
        str(locked / "below"): "permission denied",
    }
    for data, why in cases.items():
        proc = subprocess.run(
            [*AS_PLAIN_USER, sys.executable, "-m", "wiretide", *command, "--data", data],
            env=env, cwd=ROOT, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        _one_line_failure(proc, data, why)
    assert a_file.read_text() == "not a dir" and not any(locked.iterdir())
    assert not (tmp_path / "home").exists()


def test_a_read_only_data_dir_is_one_line(tmp_path: Path) -> None:
    data = tmp_path / "ro"
    data.mkdir()
    script = (
        f"mount --bind -o ro {data} {data} && "
        f"exec {sys.executable} -m wiretide tap --pcap {PCAP} --no-ui --data {data}"
    )
    proc = subprocess.run(
        ["unshare", "-m", "sh", "-c", script],
        env=_env(tmp_path), cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    if "mount" in proc.stderr and "wiretide" not in proc.stderr:
        pytest.skip(f"no read-only bind mount here: {proc.stderr.strip()}")
    _one_line_failure(proc, "read-only file system")


def test_query_of_a_dir_without_a_store_says_so_and_creates_nothing(tmp_path: Path) -> None:
    env = _env(tmp_path)
    for data in (tmp_path / "nonexistent", tmp_path / "empty"):
        if data.name == "empty":
            data.mkdir()
        for command in (["query"], ["map"], ["export", "--pcap", str(tmp_path / "out.pcap")]):
            proc = run_wiretide([*command, "--data", str(data)], env, check=False)
            _one_line_failure(proc, "no store in", str(data))
    assert not (tmp_path / "nonexistent").exists() and not any((tmp_path / "empty").iterdir())
    assert not (tmp_path / "out.pcap").exists() and not (tmp_path / "home").exists()


def test_bad_flag_values_are_one_line(tmp_path: Path) -> None:
    env = _env(tmp_path)
    for args, words in [
        (["broker", "start", "--port", "70000"], ["--port", "70000", "65534"]),
        (["broker", "start", "--port", "65535"], ["--port", "65534"]),
        (["broker", "status", "--port", "x"], ["--port"]),
        (["query", "--limit", "-3"], ["--limit", "-3"]),
        (["tap", "--pcap", str(tmp_path / "missing.pcap")], ["missing.pcap"]),
    ]:
        _one_line_failure(run_wiretide(args, env, check=False), *words)
    for name, value in [("WIRETIDE_KAFKA_PORT", "70000"), ("WIRETIDE_PARTITIONS", "four")]:
        proc = run_wiretide(["broker", "status"], {**env, name: value}, check=False)
        if name == "WIRETIDE_PARTITIONS":  # read only where topics are made
            agent = ["agent", "--pcap", str(PCAP), "--kafka", "127.0.0.1:9"]
            proc = run_wiretide(agent, {**env, name: value}, check=False)
        _one_line_failure(proc, name, value)
    assert not (tmp_path / "home" / ".wiretide" / "kafka" / "broker.pid").exists()


def _with_stdout_closed(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run with stdout a pipe whose reader is gone: every write fails with EPIPE."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run(
            [sys.executable, "-m", "wiretide", *args],
            env=env, cwd=ROOT, stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=120,
        )  # fmt: skip
    finally:
        os.close(write_end)


def test_a_reader_closing_stdout_ends_the_command_quietly(stored: Path, tmp_path: Path) -> None:
    env = _env(tmp_path, WIRETIDE_DATA=str(stored))
    # `wiretide query | head -3`: head goes away after three lines
    proc = subprocess.Popen(
        [sys.executable, "-m", "wiretide", "query"],
        env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    head = [proc.stdout.readline() for _ in range(3)]
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    assert proc.wait(120) == 141, stderr
    assert stderr == "" and all(b"/items/" in line for line in head)
    for args in (["query", "--json"], ["map", "--since", "1d"], ["kfl", "fields"]):
        closed = _with_stdout_closed(args, env)
        assert closed.returncode == 141 and closed.stderr == "", (args, closed.stderr)


def test_query_streams_every_call_in_order(stored: Path, tmp_path: Path) -> None:
    env = _env(tmp_path, WIRETIDE_DATA=str(stored))
    every = run_wiretide(["query"], env).stdout.splitlines()
    newest = run_wiretide(["query", "--limit", "5000"], env).stdout.splitlines()
    assert len(every) == 5000 and every == newest
    assert [line.split()[-3] for line in every[:2]] == ["/items/0", "/items/1"]


def _started(proc: subprocess.Popen, path: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.3)


@pytest.mark.parametrize(("role", "sign"), [("sink", "chdb"), ("worker", "health")])
def test_worker_and_sink_keep_to_their_data_dir(
    kafka: str, tmp_path: Path, role: str, sign: str
) -> None:
    data = tmp_path / "data"
    env = _env(tmp_path, WIRETIDE_PREFIX=f"t{os.getpid()}{role}-")
    run_wiretide(["agent", "--pcap", str(PCAP), "--kafka", kafka, "--data", str(data)], env)
    proc = subprocess.Popen(
        [sys.executable, "-m", "wiretide", role, "--kafka", kafka, "--data", str(data)],
        env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        _started(proc, data / "health" / role)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert "Traceback" not in err, err
    assert (data / sign).is_dir()
    assert not (tmp_path / "home" / ".wiretide").exists()


def test_export_without_a_broker_says_so_and_leaves_nothing_running(
    stored: Path, tmp_path: Path
) -> None:
    env = _env(tmp_path, WIRETIDE_DATA=str(stored))
    out = tmp_path / "out.pcap"
    nowhere = run_wiretide(
        ["export", "--pcap", str(tmp_path / "no" / "out.pcap")], env, check=False
    )
    _one_line_failure(nowhere, "there is no directory")
    proc = run_wiretide(["export", "--pcap", str(out)], env, check=False)
    _one_line_failure(proc, "no Kafka broker ever ran for", "--kafka")
    assert not out.exists() and not (stored / "kafka").exists()
