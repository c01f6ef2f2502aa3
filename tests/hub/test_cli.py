"""Starting the hub wrong gives one line and exit code 2, never a traceback."""

from __future__ import annotations

import socket
from pathlib import Path

from tests.hub.conftest import Hub, empty_env, run_hub_cli


def _one_line_error(proc) -> str:  # noqa: ANN001
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("wiretide: error: ")
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
    return proc.stderr


def test_busy_port(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = run_hub_cli(empty_env(tmp_path), "--listen", f"127.0.0.1:{port}")
    err = _one_line_error(proc)
    assert f"127.0.0.1:{port}" in err and "address already in use" in err


def test_data_dir_owned_by_another_hub(hub: Hub, stored_env: dict[str, str]) -> None:
    err = _one_line_error(run_hub_cli(stored_env, "--listen", "127.0.0.1:0"))
    assert "in use by another wiretide process" in err and f"pid {hub.proc.pid}" in err


def test_malformed_listen_address(tmp_path: Path) -> None:
    err = _one_line_error(run_hub_cli(empty_env(tmp_path), "--listen", "8899"))
    assert "expected HOST:PORT" in err
