"""tshark's side of the bench scripts: the same traffic, timed through `tshark -n -r`.

`run_tshark` reads a capture (wall time), `tshark_cpu` too (CPU time);
`run_tshark_on_flows` first writes the bench's synthetic flows (`(flow, [(direction, ts,
seq, data)], close_ts)`, as bench_http makes them) to a pcap with handshakes and FINs.
"""

from __future__ import annotations

import os
import resource
import shutil
import struct
import subprocess
import tempfile
import time
from pathlib import Path


def run_tshark(pcap: Path, *args: str) -> tuple[int, float] | None:
    """(values tshark printed, seconds it took) for `tshark -n -r PCAP ARGS`; None, said
    on stdout, when tshark is not installed or fails."""
    if shutil.which("tshark") is None:
        print("tshark: not available")
        return None
    run = _run(pcap, args)
    if run is None:
        print("tshark: not available")
        return None
    values, elapsed, _ = run
    return values, elapsed


def tshark_cpu(pcap: Path, *args: str) -> tuple[int, float] | None:
    """(values tshark printed, its CPU seconds, user + system) for `tshark -n -r PCAP
    ARGS`; None, said on stdout, when it fails."""
    run = _run(pcap, args)
    return None if run is None else (run[0], run[2])


def _run(pcap: Path, args: tuple[str, ...]) -> tuple[int, float, float] | None:
    """(values printed, wall seconds, CPU seconds) of one tshark run; None when it fails."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(
        ["tshark", "-n", "-r", str(pcap), *args],
        capture_output=True,
        text=True,
        env={**os.environ, "HOME": tempfile.gettempdir()},
    )
    elapsed = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        print(f"tshark failed: {proc.stderr.strip()[:200]}")
        return None
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return len(proc.stdout.split()), elapsed, cpu


def run_tshark_on_flows(flows, *args: str) -> tuple[int, float] | None:
    """`run_tshark` on a temporary pcap of the flows."""
    with tempfile.TemporaryDirectory() as tmp:
        pcap = Path(tmp) / "bench.pcap"
        write_pcap(flows, pcap)
        return run_tshark(pcap, *args)


def _ip4(s: str) -> bytes:
    return bytes(int(x) for x in s.split("."))


def _packet(out, ends, direction, ts, seq, flags, payload=b"", ack=0) -> None:
    src, sport, dst, dport = ends[direction]
    tcp = struct.pack(
        "!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 5 << 4, flags, 65535, 0, 0
    )
    ip = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp) + len(payload), 0, 0x4000, 64, 6, 0,
        _ip4(src), _ip4(dst),
    )  # fmt: skip
    frame = b"\x00" * 12 + b"\x08\x00" + ip + tcp + payload
    out.write(struct.pack("<IIII", ts // 10**9, ts % 10**9, len(frame), len(frame)))
    out.write(frame)


def write_pcap(flows, path: Path) -> None:
    """Ethernet/IPv4/TCP pcap of the flows, with handshake and FINs (checksums left 0)."""
    with open(path, "wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 65535, 1))  # ns resolution
        for flow, events, close_ts in flows:
            ends = {
                0: (flow.client_ip, flow.client_port, flow.server_ip, flow.server_port),
                1: (flow.server_ip, flow.server_port, flow.client_ip, flow.client_port),
            }
            nxt = {}
            for direction, _, seq, _ in events:
                nxt.setdefault(direction, seq)
            nxt.setdefault(0, 1)
            nxt.setdefault(1, 1)
            t_open = events[0][1] - 3000
            _packet(out, ends, 0, t_open, nxt[0] - 1, 0x02)
            _packet(out, ends, 1, t_open + 1000, nxt[1] - 1, 0x12, ack=nxt[0])
            _packet(out, ends, 0, t_open + 2000, nxt[0], 0x10, ack=nxt[1])
            for direction, ts, seq, data in events:
                _packet(out, ends, direction, ts, seq, 0x18, data, ack=nxt[1 - direction])
                nxt[direction] = (seq + len(data)) & 0xFFFFFFFF
            _packet(out, ends, 0, close_ts, nxt[0], 0x11, ack=nxt[1])
            _packet(out, ends, 1, close_ts + 1000, nxt[1], 0x11, ack=nxt[0] + 1)
