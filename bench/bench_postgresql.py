"""PostgreSQL dissector speed on the golden capture: µs per call, next to tshark.

    python bench/bench_postgresql.py [--seconds 2] [--no-tshark]

Reassembles tests/golden/protocols/postgresql/basic.pcap once, then replays its flows
through fresh dissectors (the dissect stage alone: no Kafka, no redaction) until
`--seconds` have passed, and prints µs per call. tshark reads the same file with
`-Y pgsql`, repeated 200 times (10 s apart); its time on one copy (start-up included)
is subtracted and the rest divided by the other 199 copies' packets.
`bench_mysql.py` and `bench_mongodb.py` reuse `main`.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from producers.pcap import read_segments  # noqa: E402
from schemas.records import ApiCall  # noqa: E402
from streams.reassembly.events import DataReceived  # noqa: E402
from streams.reassembly.tcp import TcpReassembler  # noqa: E402

GOLDEN = ROOT / "tests" / "golden" / "protocols"
REPEAT = 200  # copies of the capture tshark reads


def flows(pcap: Path) -> list[tuple[object, list]]:
    reasm = TcpReassembler()
    out: dict[str, tuple[object, list]] = {}
    for seg in read_segments(pcap):
        for ev in reasm.feed(seg):
            if isinstance(ev, DataReceived):
                entry = out.setdefault(ev.flow.flow_id, (ev.flow, []))
                entry[1].append((ev.direction, ev.data, ev.ts_ns, ev.seq))
    return list(out.values())


def replay_all(factory: Callable, recorded: list) -> int:
    n = 0
    for flow, chunks in recorded:
        d = factory(flow)
        for direction, data, ts, seq in chunks:
            for e in d.receive(direction, data, ts, seq):
                n += type(e) is ApiCall
        n += sum(type(e) is ApiCall for e in d.close(chunks[-1][2]))
    return n


def repeated_pcap(pcap: Path, copies: int, out: Path, server_port: int) -> int:
    """The capture `copies` times over, each copy 10 s later and on other client ports
    (classic pcap of Ethernet/IPv4 from tcpdump on lo), so tshark sees new connections
    and its start-up is small next to its work. Returns the packet count."""
    data = pcap.read_bytes()
    magic = int.from_bytes(data[:4], "little")
    if magic not in (0xA1B2C3D4, 0xA1B23C4D):
        raise SystemExit(f"{pcap}: not a little-endian classic pcap (re-record with tcpdump)")
    records, pos = [], 24
    while pos + 16 <= len(data):
        size = int.from_bytes(data[pos + 8 : pos + 12], "little")
        records.append(data[pos : pos + 16 + size])
        pos += 16 + size
    with out.open("wb") as f:
        f.write(data[:24])
        for k in range(copies):
            for rec in records:
                sec = int.from_bytes(rec[:4], "little") + 10 * k
                f.write(sec.to_bytes(4, "little") + moved_client(rec[4:], server_port, k))
    return copies * len(records)


def moved_client(rec: bytes, server_port: int, k: int) -> bytes:
    """A pcap record (after its seconds) with the client port shifted by `k`."""
    frame = 12  # the rest of the record header
    if len(rec) < frame + 34 or rec[frame + 12 : frame + 14] != b"\x08\x00":
        return rec
    tcp = frame + 14 + (rec[frame + 14] & 0x0F) * 4
    ports = [int.from_bytes(rec[tcp + i : tcp + i + 2], "big") for i in (0, 2)]
    side = 0 if ports[1] == server_port else 2
    port = 1024 + (ports[side // 2] - 1024 + k * 101) % 60000
    if port == server_port:
        port += 1
    return rec[: tcp + side] + port.to_bytes(2, "big") + rec[tcp + side + 2 :]


def tshark_seconds(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(["tshark", *args], check=True, capture_output=True)
    return time.perf_counter() - start


def main(
    protocol: str, factory: Callable, pcaps: list[Path], tshark_filter: str, decode_as: str
) -> None:
    """`decode_as` is tshark's `-d` value for the golden capture's port."""
    ap = argparse.ArgumentParser(description=f"{protocol} dissector speed on golden captures")
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--no-tshark", action="store_true")
    args = ap.parse_args()
    recorded = [f for p in pcaps for f in flows(p)]
    packets = sum(1 for p in pcaps for _ in read_segments(p))
    calls = rounds = 0
    start = time.perf_counter()
    while time.perf_counter() - start < args.seconds:
        calls += replay_all(factory, recorded)
        rounds += 1
    took = time.perf_counter() - start
    print(f"{protocol}: {calls // rounds} calls per replay of {len(pcaps)} capture(s), "
          f"{packets} packets, {rounds} replays")  # fmt: skip
    print(f"  wiretide dissect: {took / calls * 1e6:8.1f} µs/call  "
          f"{took / (rounds * packets) * 1e6:8.1f} µs/packet")  # fmt: skip
    if args.no_tshark or shutil.which("tshark") is None:
        print("  tshark: skipped")
        return
    for pcap in pcaps:
        big = Path(tempfile.mkdtemp()) / "repeated.pcap"
        n = repeated_pcap(pcap, REPEAT, big, int(decode_as.split("==")[1].split(",")[0]))
        once = ["-r", str(pcap), "-d", decode_as, "-Y", tshark_filter]
        base = min(tshark_seconds(once) for _ in range(3))
        full_args = ["-r", str(big), "-d", decode_as, "-Y", tshark_filter]
        full = min(tshark_seconds(full_args) for _ in range(3))
        shutil.rmtree(big.parent)
        per_packet = max(full - base, 0) / (n - n // REPEAT) * 1e6
        print(f"  tshark -Y {tshark_filter} ({pcap.name} x{REPEAT}): {full:.3f} s total, "
              f"{per_packet:8.1f} µs/packet ({base:.3f} s for one copy)")  # fmt: skip


if __name__ == "__main__":
    from streams.dissect.postgresql import POSTGRESQL

    pcaps = [GOLDEN / "postgresql" / "basic.pcap"]
    main("postgresql", POSTGRESQL, pcaps, "pgsql", "tcp.port==21510,pgsql")
