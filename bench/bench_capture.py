"""Live capture throughput on loopback: wiretide's AF_PACKET ring against tcpdump.

For each offered load a paced UDP blaster sends 64-byte datagrams to 127.0.0.1:PORT
for a few seconds while two captures run side by side on `lo` with the same filter:

  * wiretide: `AfPacketCapture` (TPACKET_V3 ring, 16 MiB) decoding every packet into a
    Segment and batching it per flow (`FlowBatcher`), i.e. all the producer does except
    talking to Kafka; in its own process, which reports its CPU time and peak RSS;
  * tcpdump -i lo -B 16384 -w /dev/null (same ring size), whose drop report is read
    from its exit summary.

Printed per load: datagrams sent per second; for each capture the packets it got, the
kernel's drop count, CPU (% of one core) and RSS. Needs root. Run:

    /tmp/v/bin/python bench/bench_capture.py [--seconds 4] [--loads 25000,50000,...]

2 cores run the blaster and both captures at once, so the figures are a floor; a load
of 0 means "as fast as the blaster goes".
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PORT = 21790

BLASTER = """
import socket, sys, time
rate, seconds, port = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect(("127.0.0.1", port))
send, payload, burst = s.send, b"w" * 64, 200
sent, start = 0, time.perf_counter()
end = start + seconds
while True:
    now = time.perf_counter()
    if now >= end:
        break
    if rate and sent > (now - start) * rate:
        time.sleep(min(0.001, sent / rate - (now - start)))
        continue
    for _ in range(burst):
        try:
            send(payload)
        except OSError:
            pass
    sent += burst
print(sent, time.perf_counter() - start)
"""


def capture_child(seconds: float) -> None:
    """Runs in its own process: capture until SIGINT, then print stats as JSON."""
    from producers.afpacket import AfPacketCapture
    from producers.batcher import FlowBatcher

    stop = []
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    batcher = FlowBatcher()
    batches = 0
    with AfPacketCapture(["lo"], ports=[PORT]) as cap:
        print("ready", flush=True)
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.monotonic()
        while not stop:
            for seg in cap.poll(0.1):
                if batcher.add(seg) is not None:
                    batches += 1
        end = time.monotonic() + 0.3  # the last block, handed over after its timeout
        while time.monotonic() < end:
            for seg in cap.poll(0.02):
                batcher.add(seg)
        wall = time.monotonic() - t0
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        stats = cap.stats()
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    stats.update(cpu_pct=100 * cpu / wall, rss_mb=cpu1.ru_maxrss / 1024)
    print(json.dumps(stats), flush=True)


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_load(rate: int, seconds: float) -> dict:
    ours = subprocess.Popen(
        [sys.executable, __file__, "--child", str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert ours.stdout is not None and ours.stdout.readline().strip() == "ready"
    dump = subprocess.Popen(
        ["tcpdump", "-Z", "root", "-i", "lo", "-B", "16384", "-n", "-w", "/dev/null"]
        + ["udp", "port", str(PORT)],
        stderr=subprocess.PIPE,
        text=True,
    )
    assert dump.stderr is not None and "listening on" in dump.stderr.readline()
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # a port that is open but unread
    sink.bind(("127.0.0.1", PORT))
    t_cpu0, t0 = _cpu_s(dump.pid), time.monotonic()
    blaster = subprocess.run(
        [sys.executable, "-c", BLASTER, str(rate), str(seconds), str(PORT)],
        capture_output=True,
        text=True,
        check=True,
    )
    sent, took = blaster.stdout.split()
    time.sleep(1.5)  # tcpdump reads its last ring block after a 1 s timeout
    t_cpu = _cpu_s(dump.pid) - t_cpu0
    t_wall = time.monotonic() - t0
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
        "sent": int(sent),
        "sent_pps": int(sent) / float(took),
        "ours": stats,
        "tcpdump": {
            "captured": count("captured"),
            "drops": count("dropped by kernel"),
            "cpu_pct": 100 * t_cpu / t_wall,
            "rss_mb": t_rss,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--loads", default="25000,50000,75000,100000,150000,0")
    parser.add_argument("--child", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        capture_child(args.child)
        return
    if os.geteuid() != 0:
        sys.exit("bench_capture: needs root (AF_PACKET and tcpdump)")
    rows = [one_load(int(x), args.seconds) for x in args.loads.split(",")]
    print(f"loopback UDP, 64-byte payloads, {args.seconds:.0f}s per load, {os.cpu_count()} cores")
    print("sent/got: datagrams; drops: the kernel's count; cpu: % of one core; MB: peak RSS")
    head = (
        f"{'offered/s':>9} {'sent/s':>7} {'sent':>8} | {'wiretide':>8} {'drops':>7} {'cpu%':>5}"
        f" {'MB':>4} | {'tcpdump':>8} {'drops':>7} {'cpu%':>5} {'MB':>4}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        o, t = r["ours"], r["tcpdump"]
        print(
            f"{r['offered'] or 'max':>9} {r['sent_pps']:7.0f} {r['sent']:8d} | "
            f"{o['packets']:8d} {o['kernel_drops']:7d} {o['cpu_pct']:5.1f} {o['rss_mb']:4.0f} | "
            f"{t['captured']:8d} {t['drops']:7d} {t['cpu_pct']:5.1f} {t['rss_mb']:4.0f}"
        )
    for name, got, drops in (
        ("wiretide", lambda r: r["ours"]["packets"], lambda r: r["ours"]["kernel_drops"]),
        ("tcpdump", lambda r: r["tcpdump"]["captured"], lambda r: r["tcpdump"]["drops"]),
    ):
        clean = [r["sent_pps"] for r in rows if drops(r) == 0 and got(r) >= r["sent"]]
        best = f"{max(clean):.0f} packets/s" if clean else "none of the loads"
        print(f"{name}: every packet captured, no kernel drops, up to {best}")


if __name__ == "__main__":
    main()
