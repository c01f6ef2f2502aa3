"""Ctrl-C during `tap --pcap` (while it publishes, hands over or waits for the calls to be
stored) ends it with one line and exit code 130, never a traceback. Found by hand: a
SIGINT inside librdkafka's flush came out as `SystemError ... returned NULL`."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from tests.conftest import GOLDEN, ROOT


@pytest.mark.parametrize("size", ["small", "large"])
def test_ctrl_c_while_a_capture_is_stored_is_one_line(wt_env, load_capture, size) -> None:  # noqa: ANN001
    # small: read whole before the pipeline is ready, so the signal lands in the final
    # flush and the wait for the calls; large: it lands while segments are published.
    pcap = GOLDEN / "e2e" / "http_basic.pcap" if size == "small" else load_capture
    proc = subprocess.Popen(
        [sys.executable, "-m", "wiretide", "tap", "--pcap", str(pcap), "--no-ui"],
        env=wt_env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    said = []
    try:
        for line in proc.stderr:
            said.append(line)
            if line.startswith("tap: pipeline ready after "):
                break  # segments are being handed over and stored
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = "".join(said) + err
    assert "Traceback" not in err and "Error" not in err, err
    if proc.returncode == 130:  # interrupted before the last call was stored
        assert err.rstrip().splitlines()[-1].endswith("interrupted"), err
    else:  # the capture was small enough to be stored before the signal landed
        assert proc.returncode == 0 and "stored " in out, out + err
