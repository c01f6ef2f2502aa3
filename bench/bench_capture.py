"""Live capture throughput on loopback: wiretide's live agent against tcpdump.

For each offered load tcpreplay (compiled, so the sender is not the bottleneck) replays
64-byte UDP datagrams of 64 flows to 127.0.0.1:PORT while two captures run side by side
on `lo` with the same filter and the same ring size:

  * wiretide: the agent's live loop (`LiveLoop` over `AfPacketCapture`: TPACKET_V3 ring,
    BPF filter, segments, per-flow batches, each batch encoded as it is published; only
    the Kafka client is left out), in its own process;
  * tcpdump -i lo -B <ring> -w /dev/null.

Printed per load, from one run: packets sent and the rate the sender reached; for each
capture the packets it got, the kernel's drop count, CPU seconds, CPU us per packet and
peak RSS. Wall-clock rates depend on how busy the machine is; CPU per packet does not, so
the last lines turn it into packets/s per core. Needs root and tcpreplay. Run:

    .venv/bin/python bench/bench_capture.py [--seconds 4] [--loads 50000,100000,200000,0]
        [--publish columns|segments] [--interface lo|all] [--ring-mb 16]

A load of 0 means "as fast as tcpreplay goes". --publish segments measures a caller of
LiveLoop that takes Segment lists (no publish_columns); --interface all a capture on every
interface (with its forwarded-copy check). The sender's own CPU per packet is printed too,
to show what it could offer on a core of its own.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PORT = 21790
FLOWS = 64
PAYLOAD = 64
ETHERNET_IPV4 = b"\0" * 12 + b"\x08\x00"  # lo's link layer: zero MACs, EtherType IPv4


def write_pcap(path: Path, packets: int = 1024) -> None:
    """An Ethernet pcap of UDP datagrams to 127.0.0.1:PORT from FLOWS source ports."""
    from producers.pcap_writer import ip_packets
    from schemas.records import Segment

    with path.open("wb") as out:
        out.write(struct.pack("=IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for i in range(packets):
            payload = b"%08d" % i + b"w" * (PAYLOAD - 8)
            sport = 40000 + i % FLOWS
            seg = Segment(
                0, "127.0.0.1", sport, "127.0.0.1", PORT, 0, 0, 0, payload, transport="udp"
            )
            (ip,) = ip_packets(seg)
            frame = ETHERNET_IPV4 + ip
            out.write(struct.pack("=IIII", 0, i, len(frame), len(frame)) + frame)


def capture_child(ring_blocks: int, publish_as: str, interface: str) -> None:
    """Runs in its own process: the live loop until SIGINT, then its stats as JSON."""
    from producers.afpacket import AfPacketCapture, RingSpec
    from producers.live import LiveLoop
    from schemas.segment_wire import SegmentColumns, encode_columns, encode_segments

    stop: list[int] = []
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    published = {"messages": 0, "published": 0, "bytes": 0}

    def publish(flow: str, segments: list) -> None:  # noqa: ANN001
        published["bytes"] += len(encode_segments(flow, segments))  # as SegmentPublisher
        published["messages"] += 1
        published["published"] += len(segments)

    def publish_columns(columns: SegmentColumns) -> None:
        published["bytes"] += len(encode_columns(columns))
        published["messages"] += 1
        published["published"] += columns.count

    where = None if interface == "all" else [interface]
    cap = AfPacketCapture(where, ports=[PORT], spec=RingSpec.of_mib(ring_blocks))
    loop = LiveLoop(
        [cap], publish, publish_columns=publish_columns if publish_as == "columns" else None
    )
    cpu0 = time.process_time()
    print("ready", flush=True)
    loop.run(lambda: bool(stop))
    loop.finish(settle_s=0.3)  # the last block is handed over after the ring's timeout
    stats = {**loop.stats(), **published}
    stats["cpu_s"] = time.process_time() - cpu0
    stats["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(stats), flush=True)


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_load(pcap: Path, rate: int, args: argparse.Namespace) -> dict:
    seconds = args.seconds
    ring_blocks = args.ring_mb
    ours = subprocess.Popen(
        [sys.executable, __file__, "--child", str(ring_blocks), args.publish, args.interface],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert ours.stdout is not None and ours.stdout.readline().strip() == "ready"
    dump = subprocess.Popen(
        ["tcpdump", "-Z", "root", "-i", "lo", "-B", str(ring_blocks * 1024), "-n"]
        + ["-w", "/dev/null", "udp", "port", str(PORT)],
        stderr=subprocess.PIPE,
        text=True,
    )
    assert dump.stderr is not None and "listening on" in dump.stderr.readline()
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # a port that is open but unread
    sink.bind(("127.0.0.1", PORT))
    t_cpu0 = _cpu_s(dump.pid)
    pace = [f"--pps={rate}", "--pps-multi=64", f"--limit={int(rate * seconds)}"]
    children0 = resource.getrusage(resource.RUSAGE_CHILDREN)  # tcpreplay's alone below
    replay = subprocess.run(
        ["tcpreplay", "-q", "-i", "lo", "--preload-pcap", "--loop=0"]
        + (pace if rate else ["--topspeed", f"--duration={seconds:.0f}"])
        + [str(pcap)],
        capture_output=True,
        text=True,
        check=True,
    )
    m = re.search(r"Actual: (\d+) packets .* in ([\d.]+) seconds", replay.stdout)
    assert m, replay.stdout + replay.stderr
    sent, took = int(m.group(1)), float(m.group(2))
    children1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    sender_cpu = sum(
        getattr(children1, f) - getattr(children0, f) for f in ("ru_utime", "ru_stime")
    )
    time.sleep(1.5)  # tcpdump reads its last ring block after a 1 s timeout
    t_cpu = _cpu_s(dump.pid) - t_cpu0
    t_rss = _rss_mb(dump.pid)
    dump.send_signal(signal.SIGINT)
    summary = dump.communicate(timeout=30)[1]
    ours.send_signal(signal.SIGINT)
    stats = json.loads(ours.communicate(timeout=60)[0].strip().splitlines()[-1])
    sink.close()

    def count(what: str) -> int:
        m = re.search(rf"(\d+) packets? {what}", summary)
        return int(m.group(1)) if m else -1

    return {
        "offered": rate,
        "sent": sent,
        "sent_pps": sent / took,
        "sender_cpu_s": sender_cpu,
        "ours": {
            "got": stats["published"],
            "drops": stats["kernel_drops"],
            "cpu_s": stats["cpu_s"],
            "rss_mb": stats["rss_mb"],
        },
        "tcpdump": {
            "got": count("captured"),
            "drops": count("dropped by kernel"),
            "cpu_s": t_cpu,
            "rss_mb": t_rss,
        },
    }


def _us(cpu_s: float, packets: int) -> float:
    return 1e6 * cpu_s / packets if packets > 0 else float("nan")


def report(rows: list[dict], args: argparse.Namespace) -> None:
    where = "every interface" if args.interface == "all" else args.interface
    print(
        f"loopback UDP, {PAYLOAD}-byte payloads, {FLOWS} flows, {args.seconds:.0f}s per load, "
        f"{args.ring_mb} MiB rings, {os.cpu_count()} cores; wiretide captures on {where} "
        f"and publishes {args.publish}"
    )
    print("got: packets captured; drops: the kernel's count; cpu: CPU seconds; MB: peak RSS")
    head = (
        f"{'offered/s':>9} {'sent/s':>7} {'sent':>8} |"
        f" {'wiretide':>8} {'drops':>6} {'cpu s':>6} {'us/pkt':>6} {'MB':>4} |"
        f" {'tcpdump':>8} {'drops':>6} {'cpu s':>6} {'us/pkt':>6} {'MB':>4}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        cells = [f"{r['offered'] or 'max':>9} {r['sent_pps']:7.0f} {r['sent']:8d}"]
        for side in (r["ours"], r["tcpdump"]):
            cells.append(
                f" {side['got']:8d} {side['drops']:6d} {side['cpu_s']:6.2f}"
                f" {_us(side['cpu_s'], side['got']):6.2f} {side['rss_mb']:4.0f}"
            )
        print(" |".join(cells))
    for name in ("ours", "tcpdump"):
        label = "wiretide" if name == "ours" else name
        clean = [
            r["sent_pps"] for r in rows if r[name]["drops"] == 0 and r[name]["got"] >= r["sent"]
        ]
        best = f"{max(clean):.0f} packets/s" if clean else "none of the loads"
        per_packet = [_us(r[name]["cpu_s"], r[name]["got"]) for r in rows if r[name]["got"] > 0]
        us = statistics.median(per_packet) if per_packet else float("nan")
        print(
            f"{label}: every packet captured with no kernel drops up to {best} sent; "
            f"median {us:.2f} CPU us/packet = {1e6 / us:,.0f} packets/s per core"
        )
    sender_us = _us(sum(r["sender_cpu_s"] for r in rows), sum(r["sent"] for r in rows))
    print(
        f"sender (tcpreplay): {sender_us:.2f} CPU us/packet = {1e6 / sender_us:,.0f} packets/s "
        "per core it can offer (with the kernel's loopback work it is charged for)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--loads", default="50000,100000,200000,300000,0")
    parser.add_argument("--ring-mb", type=int, default=16, help="ring size of both captures")
    parser.add_argument(
        "--publish",
        choices=["columns", "segments"],
        default="columns",
        help="how wiretide publishes its batches: as columns (SegmentPublisher.publish_columns)"
        " or as Segment lists (publish), as a caller of LiveLoop without publish_columns does",
    )
    parser.add_argument(
        "--interface", default="lo", help="where wiretide captures: lo, or all (every interface)"
    )
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        capture_child(int(args.child[0]), args.child[1], args.child[2])
        return
    if os.geteuid() != 0:
        sys.exit("bench_capture: needs root (AF_PACKET, tcpdump and tcpreplay)")
    for tool in ("tcpdump", "tcpreplay"):
        if shutil.which(tool) is None:
            sys.exit(f"bench_capture: needs {tool} (apt-get install {tool})")
    try:
        loads = [int(x) for x in args.loads.split(",")]
    except ValueError:
        sys.exit(f"bench_capture: --loads {args.loads!r}: give packets/s, comma-separated")
    with tempfile.TemporaryDirectory() as tmp:
        pcap = Path(tmp) / "udp.pcap"
        write_pcap(pcap)
        rows = [one_load(pcap, rate, args) for rate in loads]
    report(rows, args)


if __name__ == "__main__":
    main()
