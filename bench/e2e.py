#!/usr/bin/env python3
"""End-to-end benchmark: `wiretide tap --pcap` against tshark on the same capture.

    python bench/e2e.py --pcap FILE [--data DIR] [--wiretide CMD] [--only tshark|wiretide]

Both tools read the same file in one run (the file is read once beforehand so both find it
in the page cache):

* tshark dissects HTTP fully (TCP reassembly, HTTP header and body reassembly, dechunking)
  in a single pass and prints, per HTTP frame, the request/response markers and
  `http.request_in` (set on every response matched to its request). A call is a response
  matched to a request, as wiretide stores it. TCP sequence analysis is switched off: it
  does not change what HTTP sees, and costs time and half of tshark's memory.
* wiretide: `wiretide broker start --data DIR` first (a long-lived service, not timed),
  then the timed `wiretide tap --pcap FILE --data DIR`, which ends with a line
  `stored N calls in S s`; stored calls are then counted with
  `wiretide query --data DIR --json http` (one JSON object per line).

Peak RSS: tshark's from wait4() of its process. wiretide's is the sum over its process
tree (tap, worker, sink, ...) of each process's peak (VmHWM), sampled from /proc every
0.1 s; a Java Kafka broker in that tree is excluded, as the broker is a shared service.
CPU seconds: each tool's total from wait4() (user + system of the process and the children
it reaped), plus for wiretide the Kafka broker's CPU during the run (it carries every
segment and call twice); wiretide's per process from /proc/PID/stat, sampled with its RSS
(the last 0.1 s of a process's life can escape the samples: the sum is shown against the
total), and per unit: the tap (the agent) per packet, the workers, the sink and the broker
per call, each including its start-up. Also shown: each worker's CPU (their balance), the
segment bytes in each partition, and the CPU each kind of process used in each twelfth of
the run (stages that overlap are busy in the same rows).

Exit status: 0 when the call counts agree within --tolerance (0.1 %), 1 when they do not,
2 when a tool is missing or fails.  Make captures with bench/make_capture.sh.
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
import re
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

STORED_RE = re.compile(r"stored (\d+) calls in ([0-9.]+)s")
TSHARK_PREFS = [
    "-o",
    "tcp.analyze_sequence_numbers:FALSE",
    "-o",
    "tcp.calculate_timestamps:FALSE",
    "-o",
    "tcp.track_bytes_in_flight:FALSE",
]
TSHARK_FIELDS = ["http.request", "http.response", "http.request_in"]


class BenchError(Exception):
    """A one-line problem to report (exit status 2)."""


# ---------------------------------------------------------------------------------------
# The capture: packet count, server ports, and a warm page cache
# ---------------------------------------------------------------------------------------


@dataclass
class Capture:
    path: Path
    size: int
    packets: int | None  # None for pcapng (not walked)
    server_ports: list[int]


_LINK_OFFSETS = {0: 4, 1: 14, 101: 0, 108: 4, 113: 16, 228: 0, 276: 20}


def _ip_syn_dport(pkt: bytes | mmap.mmap, off: int, end: int) -> int | None:
    """Destination port of a TCP SYN without ACK at `off`, else None."""
    if end - off < 20:
        return None
    version = pkt[off] >> 4
    if version == 4:
        if pkt[off + 9] != 6:
            return None
        tcp = off + (pkt[off] & 0x0F) * 4
    elif version == 6:
        if pkt[off + 6] != 6:  # no extension headers on a plain SYN
            return None
        tcp = off + 40
    else:
        return None
    if end - tcp < 14:
        return None
    flags = pkt[tcp + 13]
    if flags & 0x12 == 0x02:
        return struct.unpack_from("!H", pkt, tcp + 2)[0]
    return None


def scan_capture(path: Path, syn_window: int = 50_000) -> Capture:
    """Walk a classic pcap once: count packets, find server ports (from SYNs), and pull the
    whole file into the page cache so neither tool pays for the first read."""
    size = path.stat().st_size
    if size < 24:
        raise BenchError(f"{path} is not a capture file ({size} bytes)")
    ports: dict[int, int] = {}
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        magic = m[:4]
        if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
            endian = "<"
        elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
            endian = ">"
        elif magic == b"\x0a\x0d\x0d\x0a":  # pcapng: only warm the cache
            for off in range(0, size, mmap.PAGESIZE):
                m[off]
            return Capture(path, size, None, [])
        else:
            raise BenchError(f"{path} is neither pcap nor pcapng (magic {magic.hex()})")
        linktype = struct.unpack_from(endian + "I", m, 20)[0] & 0x0FFFFFFF
        link_off = _LINK_OFFSETS.get(linktype)
        rec = struct.Struct(endian + "IIII")
        off, packets = 24, 0
        while off + 16 <= size:
            incl = rec.unpack_from(m, off)[2]
            start, off = off + 16, off + 16 + incl
            if off > size:
                break  # truncated last record: tshark reports it too
            packets += 1
            if packets <= syn_window and link_off is not None:
                port = _ip_syn_dport(m, start + link_off, off)
                if port is not None:
                    ports[port] = ports.get(port, 0) + 1
            elif incl > mmap.PAGESIZE:  # touch the pages a long record spans
                for p in range(start, off, mmap.PAGESIZE):
                    m[p]
    top = sorted(ports, key=ports.get, reverse=True)[:8]
    return Capture(path, size, packets, top)


# ---------------------------------------------------------------------------------------
# Measuring a child: wall time, CPU time, peak RSS (own and of its process tree)
# ---------------------------------------------------------------------------------------


@dataclass
class Run:
    returncode: int
    wall: float
    cpu: float  # user + sys of the process and the children it reaped
    maxrss_mb: float  # ru_maxrss from wait4 (largest single process it covers)
    tree_rss_mb: float = 0.0  # sum of per-process peaks over the sampled tree
    tree_peak_now_mb: float = 0.0  # largest simultaneous sum seen
    per_process: dict[str, float] = field(default_factory=dict)  # label -> peak RSS MB
    cpu_per_process: dict[str, float] = field(default_factory=dict)  # label -> CPU seconds
    excluded: list[str] = field(default_factory=list)
    broker_cpu: float = 0.0  # the Kafka broker's CPU seconds during the run (in `cpu`)
    worker_cpu: list[float] = field(default_factory=list)  # each worker's CPU s, largest first
    # (bucket end s, {label: CPU s in the bucket}): when each stage was busy
    timeline: list[tuple[float, dict[str, float]]] = field(default_factory=list)


def _wait(proc: subprocess.Popen, started: float) -> Run:
    _, status, ru = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Run(proc.returncode, wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024)


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


class TreeSampler(threading.Thread):
    """Polls /proc for the descendants of `root` and records each one's VmHWM and CPU
    seconds (user + system)."""

    def __init__(
        self,
        root: int,
        exclude: re.Pattern[str],
        interval: float = 0.1,
        extra: dict[int, str] | None = None,
    ):
        """`extra`: processes outside the tree whose CPU is followed too (the broker, a
        shared service: its RSS is not summed), pid -> label."""
        super().__init__(daemon=True)
        self.root, self.exclude, self.interval = root, exclude, interval
        self.extra = dict(extra or {})
        self._base = {pid: _pid_cpu(pid) or 0.0 for pid in self.extra}  # CPU before the run
        self.started = time.perf_counter()
        # (seconds since start, {pid: CPU seconds so far}) per sample: which stages overlap
        self.timeline: list[tuple[float, dict[int, float]]] = []
        self.stop = threading.Event()
        self.hwm: dict[int, int] = {}  # pid -> peak RSS in kB
        self.cpu: dict[int, float] = {}  # pid -> CPU seconds at its last sample
        self._ticks: dict[int, float] = {}  # pid -> CPU seconds, every process, this sample
        self.names: dict[int, str] = {}
        self.excluded: dict[int, str] = {}
        self.peak_now = 0

    def _tree(self) -> list[int]:
        """The root, its descendants, and anything else in its session (it leads one)."""
        children: dict[int, list[int]] = {}
        session: list[int] = []
        ticks: dict[int, float] = {}
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            stat = _read(f"/proc/{entry.name}/stat")
            if not stat:
                continue
            rest = stat.rsplit(b")", 1)[1].split()
            pid = int(entry.name)
            ticks[pid] = (int(rest[11]) + int(rest[12])) / _CLOCK_TICKS  # utime + stime
            children.setdefault(int(rest[1]), []).append(pid)
            if int(rest[3]) == self.root and pid != self.root:
                session.append(pid)  # daemonized workers are still in the tap's session
        out, todo = set(), [self.root, *session]
        while todo:
            pid = todo.pop()
            if pid not in out:
                out.add(pid)
                todo.extend(children.get(pid, ()))
        self._ticks = ticks
        return sorted(out)

    def sample(self) -> None:
        now = 0
        for pid in self._tree():
            if pid in self.excluded:
                continue
            # read every time: a forked child shows its parent's command line until it execs
            cmd = (_read(f"/proc/{pid}/cmdline") or b"").replace(b"\0", b" ").strip()
            name = cmd.decode(errors="replace") or self.names.get(pid, f"pid {pid}")
            if self.exclude.search(name):
                self.excluded[pid] = name
                self.extra.setdefault(pid, BROKER_LABEL)  # a broker the tap started: CPU only
                self.hwm.pop(pid, None)
                self.names.pop(pid, None)
                continue
            self.names[pid] = name
            status = _read(f"/proc/{pid}/status")
            if not status:
                continue
            fields = dict(
                line.split(b":", 1) for line in status.splitlines() if line.startswith(b"Vm")
            )
            rss = int(fields.get(b"VmRSS", b"0 kB").split()[0])
            hwm = int(fields.get(b"VmHWM", b"0 kB").split()[0])
            self.hwm[pid] = max(self.hwm.get(pid, 0), hwm, rss)
            if pid in self._ticks:
                self.cpu[pid] = self._ticks[pid]
            now += rss
        self.peak_now = max(self.peak_now, now)
        for pid in self.extra:
            if pid in self._ticks:
                self.cpu[pid] = self._ticks[pid] - self._base.get(pid, 0.0)
        self.timeline.append((time.perf_counter() - self.started, dict(self.cpu)))

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.sample()
            except Exception:  # a process vanished mid-read: the next sample sees the rest
                pass
            self.stop.wait(self.interval)


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
BROKER_LABEL = "kafka broker"


def _pid_cpu(pid: int) -> float | None:
    """User + system CPU seconds of a process so far (None: gone)."""
    stat = _read(f"/proc/{pid}/stat")
    if not stat:
        return None
    rest = stat.rsplit(b")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / _CLOCK_TICKS


def broker_pids(data: Path) -> dict[int, str]:
    """The data dir's running broker (started by `wiretide broker start`), pid -> label."""
    raw = _read(str(data / "kafka" / "broker.pid"))
    try:
        pid = int(raw.split()[0]) if raw else 0
    except ValueError:
        return {}
    return {pid: BROKER_LABEL} if pid and _pid_cpu(pid) is not None else {}


def _short(cmdline: str) -> str:
    """A readable label for a process: the wiretide subcommand, or the program name."""
    words = cmdline.split()
    for i, w in enumerate(words):
        if w.endswith("wiretide") or w.endswith("wiretide.cli"):
            return " ".join(["wiretide", *words[i + 1 : i + 2]])
    for w in words:
        if w.startswith("-"):
            continue
        return os.path.basename(w)
    return cmdline[:30]


# ---------------------------------------------------------------------------------------
# tshark
# ---------------------------------------------------------------------------------------


@dataclass
class TsharkResult:
    command: list[str]
    requests: int
    responses: int
    calls: int  # responses matched to a request
    run: Run


def tshark_command(tshark: str, cap: Capture, ports: list[int]) -> list[str]:
    cmd = [tshark, "-n", "-r", str(cap.path), *TSHARK_PREFS]
    for port in ports:
        cmd += ["-d", f"tcp.port=={port},http"]
    cmd += ["-Y", "http.request || http.response", "-T", "fields", "-E", "occurrence=a"]
    for name in TSHARK_FIELDS:
        cmd += ["-e", name]
    return cmd


def run_tshark(tshark: str, cap: Capture, ports: list[int]) -> TsharkResult:
    cmd = tshark_command(tshark, cap, ports)
    requests = responses = calls = 0
    with tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL)
        try:
            for line in proc.stdout:
                req, resp, req_in = (line.rstrip(b"\n").split(b"\t") + [b"", b""])[:3]
                # several messages in one frame show as "1,1"
                requests += req.count(b",") + 1 if req else 0
                responses += resp.count(b",") + 1 if resp else 0
                calls += req_in.count(b",") + 1 if req_in else 0
        except BaseException:
            proc.kill()
            raise
        finally:
            proc.stdout.close()
            run = _wait(proc, started)
        if run.returncode != 0:
            err.seek(0)
            lines = [
                ln
                for ln in err.read().decode(errors="replace").splitlines()
                if ln.strip() and "dangerous" not in ln
            ]
            raise BenchError(
                f"tshark failed (exit {run.returncode}): {lines[-1] if lines else 'no output'}"
            )
    run.tree_rss_mb = run.maxrss_mb
    return TsharkResult(cmd, requests, responses, calls, run)


# ---------------------------------------------------------------------------------------
# wiretide
# ---------------------------------------------------------------------------------------


@dataclass
class WiretideResult:
    command: list[str]
    calls: int  # counted by `wiretide query`
    reported_calls: int | None  # from tap's last line
    reported_seconds: float | None
    run: Run
    partition_bytes: list[int] = field(default_factory=list)  # segments topic, per partition


def resolve_wiretide(spec: str | None) -> list[str]:
    if spec:
        cmd = shlex.split(spec)
        if not cmd or not shutil.which(cmd[0]):
            raise BenchError(f"--wiretide {spec!r}: {cmd[0] if cmd else 'empty command'} not found")
        return cmd
    exe = shutil.which("wiretide")
    if not exe:
        raise BenchError(
            "wiretide not found on PATH: install the repo (pip install -e .), pass "
            "--wiretide 'python -m wiretide.cli', or use --only tshark"
        )
    return [exe]


def _last_lines(text: str, n: int = 1) -> str:
    lines = [ln.strip() for ln in text.replace("\r", "\n").splitlines() if ln.strip()]
    return " | ".join(lines[-n:]) if lines else "no output"


def _helper(cmd: list[str], what: str, timeout: float) -> subprocess.CompletedProcess:
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired:
        msg = f"{what} did not finish within {timeout:.0f}s: {shlex.join(cmd)}"
        raise BenchError(msg) from None
    if proc.returncode != 0:
        raise BenchError(
            f"{what} failed (exit {proc.returncode}): {_last_lines(proc.stderr + proc.stdout)}"
        )
    return proc


def count_stored(wiretide: list[str], data: Path, timeout: float) -> int:
    """`wiretide query --data DIR --json http | wc -l`, streamed."""
    cmd = [*wiretide, "query", "--data", str(data), "--json", "http"]
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL)
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        lines, last = 0, b"\n"
        try:
            while chunk := proc.stdout.read(1 << 20):
                lines += chunk.count(b"\n")
                last = chunk[-1:]
        finally:
            timer.cancel()
            proc.stdout.close()
            proc.wait()
        if proc.returncode != 0:
            err.seek(0)
            msg = _last_lines(err.read().decode(errors="replace"))
            raise BenchError(f"wiretide query failed (exit {proc.returncode}): {msg}")
    return lines + (last != b"\n")


def run_wiretide(
    wiretide: list[str], cap: Capture, data: Path, timeout: float, exclude: re.Pattern[str]
) -> WiretideResult:
    cmd = [*wiretide, "tap", "--pcap", str(cap.path), "--data", str(data)]
    fd, name = tempfile.mkstemp(prefix="wiretide-tap-", suffix=".log")
    log = Path(name)
    with os.fdopen(fd, "wb") as out:
        started = time.perf_counter()
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        sampler = TreeSampler(proc.pid, exclude, extra=broker_pids(data))
        sampler.start()
        timer = threading.Timer(timeout, lambda: _killpg(proc.pid))
        timer.start()
        try:
            run = _wait(proc, started)
        except BaseException:
            _killpg(proc.pid)
            raise
        finally:
            timer.cancel()
            sampler.stop.set()
            sampler.join()
    # workers the tap did not reap (should not happen) would still be sampled above
    _killpg(proc.pid)
    text = log.read_text(errors="replace")
    if run.returncode != 0:
        why = "timed out" if run.wall >= timeout else f"exit {run.returncode}"
        raise BenchError(f"wiretide tap failed ({why}): {_last_lines(text)} (log kept: {log})")
    log.unlink()
    matches = STORED_RE.findall(text)
    reported = (int(matches[-1][0]), float(matches[-1][1])) if matches else (None, None)

    run.tree_rss_mb = max(sum(sampler.hwm.values()) / 1024, run.maxrss_mb)
    run.tree_peak_now_mb = sampler.peak_now / 1024
    labels = labels_of(sampler)
    run.per_process = by_label(labels, {p: kb / 1024 for p, kb in sampler.hwm.items()})
    run.cpu_per_process = by_label(labels, sampler.cpu)
    run.worker_cpu = sorted(
        (v for p, v in sampler.cpu.items() if labels.get(p) == "wiretide worker"), reverse=True
    )
    run.timeline = timeline(sampler, labels)
    # the broker's CPU is the pipeline's too (wait4 counts only the tap's tree)
    run.broker_cpu = sum(sampler.cpu.get(p, 0.0) for p in sampler.extra)
    run.cpu += run.broker_cpu
    run.excluded = sorted({_short(n) for n in sampler.excluded.values()})
    calls = count_stored(wiretide, data, timeout)
    return WiretideResult(cmd, calls, reported[0], reported[1], run)


def labels_of(sampler: TreeSampler) -> dict[int, str]:
    """A `_short` label per sampled process; the followed ones (the broker) as given."""
    labels = {pid: _short(name) for pid, name in sampler.names.items()}
    return {**labels, **sampler.extra}


def by_label(labels: dict[int, str], per_pid: dict[int, float]) -> dict[str, float]:
    """Per-process figures summed by label; several processes of one label are
    named "label xN" (the two workers: "wiretide worker x2")."""
    total: dict[str, float] = {}
    count: dict[str, int] = {}
    for pid, value in per_pid.items():
        label = labels.get(pid, str(pid))
        total[label] = total.get(label, 0.0) + value
        count[label] = count.get(label, 0) + 1
    return {(f"{k} x{count[k]}" if count[k] > 1 else k): v for k, v in total.items()}


def timeline(
    sampler: TreeSampler, labels: dict[int, str], buckets: int = 12
) -> list[tuple[float, dict[str, float]]]:
    """The run cut in `buckets` spans of wall time, with the CPU seconds each kind of process
    used in each: stages that overlap are busy in the same spans."""
    points = sampler.timeline
    if len(points) < 2:
        return []
    end = points[-1][0]
    width = end / buckets
    out: list[tuple[float, dict[str, float]]] = []
    prev: dict[int, float] = {}
    k = 0
    for t, cpu in points:
        while t > (k + 1) * width and k < buckets - 1:
            k += 1
        while len(out) <= k:
            out.append(((len(out) + 1) * width, {}))
        row = out[k][1]
        for pid, v in cpu.items():
            label = labels.get(pid, str(pid))
            row[label] = row.get(label, 0.0) + v - prev.get(pid, 0.0)
        prev = cpu
    return out


def _killpg(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        pass


# ---------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------


def _rate(calls: int, seconds: float) -> float:
    return calls / seconds if seconds > 0 else 0.0


def print_table(rows: list[tuple[str, int, Run]]) -> None:
    head = ("tool", "calls", "seconds", "calls/s", "CPU s", "cores busy", "peak RSS MB")
    body = [
        (
            name,
            f"{calls:,}",
            f"{run.wall:.2f}",
            f"{_rate(calls, run.wall):,.0f}",
            f"{run.cpu:.2f}",
            f"{run.cpu / run.wall if run.wall > 0 else 0:.2f}",
            f"{run.tree_rss_mb:,.0f}",
        )
        for name, calls, run in rows
    ]
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]
    for r in [head, *body]:
        cells = [r[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True)
        ]
        print("  ".join(cells))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description="Compare `wiretide tap --pcap` with tshark on one capture.",
        epilog="Exit status: 0 counts agree, 1 counts differ, 2 a tool is missing or failed.",
    )
    ap.add_argument("--pcap", required=True, type=Path, help="capture (bench/make_capture.sh)")
    ap.add_argument(
        "--data",
        type=Path,
        help="wiretide data dir; must hold no calls yet (default: a temporary dir, removed)",
    )
    ap.add_argument("--wiretide", help="wiretide command (default: `wiretide` on PATH)")
    ap.add_argument("--tshark", default="tshark", help="tshark executable (default: tshark)")
    ap.add_argument("--only", choices=("tshark", "wiretide"), help="run one half only")
    ap.add_argument(
        "--port",
        type=int,
        action="append",
        help="HTTP server port for tshark's decode-as (default: from the SYNs in the "
        "capture; 0 = none, rely on tshark's heuristics)",
    )
    ap.add_argument("--tolerance", type=float, default=0.001, help="default 0.001 (0.1%%)")
    ap.add_argument("--timeout", type=float, default=3600, help="per tool, seconds")
    ap.add_argument("--no-broker", action="store_true", help="do not run `broker start`")
    ap.add_argument("--keep-broker", action="store_true", help="leave the broker running")
    ap.add_argument("--json-out", type=Path, help="also write the results as JSON here")
    args = ap.parse_args(argv)
    return exit_status("e2e", lambda: _main(args))


def exit_status(prog: str, run: Callable[[], int]) -> int:
    """`run()`'s status; a BenchError said in one line on stderr is 2, Ctrl-C 130."""
    try:
        return run()
    except BenchError as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


def _main(args: argparse.Namespace) -> int:
    if not args.pcap.is_file():
        raise BenchError(f"{args.pcap}: no such capture; make one with bench/make_capture.sh")
    do_tshark = args.only in (None, "tshark")
    do_wiretide = args.only in (None, "wiretide")
    tshark = wiretide = None
    if do_tshark:
        tshark = shutil.which(args.tshark)
        if not tshark:
            raise BenchError(
                f"{args.tshark} not found: install it (apt-get install tshark), pass "
                "--tshark PATH, or use --only wiretide"
            )
    if do_wiretide:
        wiretide = resolve_wiretide(args.wiretide)

    cap = scan_capture(args.pcap.resolve())
    if args.port:
        ports = [p for p in args.port if p]
    else:
        ports = cap.server_ports
    pk = f"{cap.packets:,} packets" if cap.packets is not None else "pcapng"
    print(f"capture: {cap.path}  {cap.size / 1e6:,.1f} MB  {pk}  server ports {ports or '?'}")

    rows: list[tuple[str, int, Run]] = []
    result: dict = {"pcap": str(cap.path), "bytes": cap.size, "packets": cap.packets}
    ts = wt = None
    if do_tshark:
        print(f"$ {shlex.join(tshark_command(tshark, cap, ports))}", flush=True)
        ts = run_tshark(tshark, cap, ports)
        rows.append(("tshark", ts.calls, ts.run))
        result["tshark"] = {
            "command": ts.command,
            "requests": ts.requests,
            "responses": ts.responses,
            "calls": ts.calls,
            **_timing(ts.calls, ts.run),
        }
    if do_wiretide:
        wt = _bench_wiretide(args, wiretide, cap)
        rows.append(("wiretide", wt.calls, wt.run))
        result["wiretide"] = {
            "command": wt.command,
            "calls": wt.calls,
            "reported_calls": wt.reported_calls,
            "reported_seconds": wt.reported_seconds,
            **_timing(wt.calls, wt.run),
            "peak_rss_mb_by_process": wt.run.per_process,
            "peak_simultaneous_rss_mb": wt.run.tree_peak_now_mb,
            "cpu_seconds_by_process": wt.run.cpu_per_process,
            "broker_cpu_seconds": wt.run.broker_cpu,
            "worker_cpu_seconds": wt.run.worker_cpu,
            "segment_bytes_by_partition": wt.partition_bytes,
            "cpu_timeline": wt.run.timeline,
            "cpu_us_per_unit": per_unit(wt.run.cpu_per_process, wt.calls, cap.packets),
        }

    print()
    print_table(rows)
    print()
    status = _report(ts, wt, args.tolerance, result, cap.packets)
    if args.json_out:
        args.json_out.write_text(json.dumps(result, indent=2) + "\n")
    return status


def _timing(calls: int, run: Run) -> dict:
    """The JSON figures both tools' results share, in their order."""
    return {
        "seconds": run.wall,
        "cpu_seconds": run.cpu,
        "calls_per_s": _rate(calls, run.wall),
        "peak_rss_mb": run.tree_rss_mb,
    }


def _bench_wiretide(args: argparse.Namespace, wiretide: list[str], cap: Capture) -> WiretideResult:
    """`wiretide tap` the capture into a data dir of its own (or --data, which must hold no
    calls), with a broker started for it unless --no-broker."""
    with broker_data(
        wiretide, args.data, "wiretide-e2e-", start=not args.no_broker, keep=args.keep_broker
    ) as data:
        if args.data:
            try:
                before = count_stored(wiretide, data, args.timeout)
            except BenchError:
                before = 0  # nothing stored yet (no table)
            if before:
                raise BenchError(f"{data} already holds {before} calls: pass a fresh --data DIR")
        exclude = re.compile(r"(^|[/ ])java( |$)|kafka\.Kafka")
        tap = [*wiretide, "tap", "--pcap", str(cap.path), "--data", str(data)]
        print(f"$ {shlex.join(tap)}", flush=True)
        result = run_wiretide(wiretide, cap, data, args.timeout, exclude)
        result.partition_bytes = segment_partitions(data)
        return result


def segment_partitions(data: Path, topic: str = "wiretide.segments") -> list[int]:
    """Bytes of segment messages each partition of the data dir's broker holds (what each
    worker got to do; [] when the Kafka client or the broker cannot tell)."""
    try:
        from confluent_kafka import Consumer, TopicPartition

        from wiretide.broker import LocalBroker
    except ImportError:
        return []
    port = LocalBroker(data / "kafka").recorded_port()
    if port is None:
        return []
    consumer = Consumer(
        {"bootstrap.servers": f"127.0.0.1:{port}", "group.id": "e2e-count", "log_level": 0}
    )
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        out = []
        for p in sorted(parts):
            consumer.assign([TopicPartition(topic, p, 0)])
            size = 0
            while msgs := consumer.consume(1000, timeout=2):
                size += sum(len(m.value() or b"") for m in msgs if m.error() is None)
            out.append(size)
        return out
    except Exception:  # noqa: BLE001 - a figure to show, never a reason to fail the run
        return []
    finally:
        consumer.close()


@contextmanager
def broker_data(
    wiretide: list[str], data: Path | None, prefix: str, *, start: bool, keep: bool
) -> Iterator[Path]:
    """The data dir `data` (made if missing), or a temporary one named `prefix`... that is
    removed afterwards; with a broker started on it when `start`, stopped again unless `keep`."""
    tmp = None
    if data:
        data = data.resolve()
        data.mkdir(parents=True, exist_ok=True)
    else:
        data = Path(tmp := tempfile.mkdtemp(prefix=prefix))
    started_broker = False
    try:
        if start:
            bcmd = [*wiretide, "broker", "start", "--data", str(data)]
            print(f"$ {shlex.join(bcmd)}", flush=True)
            _helper(bcmd, "wiretide broker start", timeout=300)
            started_broker = True
        yield data
    finally:
        if started_broker and not keep:
            subprocess.run(
                [*wiretide, "broker", "stop", "--data", str(data)],
                capture_output=True, stdin=subprocess.DEVNULL, timeout=120,
            )  # fmt: skip
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


def per_unit(cpu: dict[str, float], calls: int, packets: int | None) -> dict[str, float]:
    """CPU microseconds per unit of each process kind: the tap (the agent, which reads
    the capture) per packet, everything else (workers, sink) per stored call."""
    out: dict[str, float] = {}
    for label, seconds in cpu.items():
        if label.startswith("wiretide tap"):
            if packets:
                out[f"{label} per packet"] = seconds * 1e6 / packets
        elif calls:
            out[f"{label} per call"] = seconds * 1e6 / calls
    return out


def print_timeline(rows: list[tuple[float, dict[str, float]]]) -> None:
    """CPU seconds per kind of process in each span of the run: which stages overlap."""
    if not rows:
        return
    names = sorted({name for _, row in rows for name in row})
    short = [n.removeprefix("wiretide ") for n in names]
    widths = [max(6, len(n)) for n in short]
    print("CPU s per span of the run (stages busy at once overlap in a row):")
    print("  until s  " + "  ".join(n.rjust(w) for n, w in zip(short, widths, strict=True)))
    for end, row in rows:
        cells = [f"{row.get(n, 0.0):.2f}".rjust(w) for n, w in zip(names, widths, strict=True)]
        print(f"  {end:7.1f}  " + "  ".join(cells))


def _report(
    ts: TsharkResult | None,
    wt: WiretideResult | None,
    tolerance: float,
    result: dict,
    packets: int | None = None,
) -> int:
    """Print what each tool did and, with both, whether the counts agree (0) or not (1);
    the ratio and the verdict go into `result`."""
    if ts:
        print(
            f"tshark: {ts.requests:,} requests, {ts.responses:,} responses, "
            f"{ts.calls:,} matched (= calls); RSS from wait4"
        )
    if wt:
        rep = (
            f"tap said {wt.reported_calls:,} calls in {wt.reported_seconds:.2f}s"
            if wt.reported_calls is not None
            else "tap printed no 'stored N calls in Ss' line"
        )
        parts = ", ".join(f"{k} {v:,.0f}" for k, v in sorted(wt.run.per_process.items()))
        print(f"wiretide: {rep}; query counted {wt.calls:,}")
        print(
            f"wiretide RSS MB by process: {parts or 'n/a'}; simultaneous peak "
            f"{wt.run.tree_peak_now_mb:,.0f}; excluded: {', '.join(wt.run.excluded) or 'none'} "
            "(broker not counted)"
        )
        cpu = wt.run.cpu_per_process
        parts = ", ".join(f"{k} {v:,.2f}" for k, v in sorted(cpu.items()))
        print(
            f"wiretide CPU s by process: {parts or 'n/a'}; sampled sum {sum(cpu.values()):,.2f} "
            f"of {wt.run.cpu:,.2f} from wait4"
        )
        print(f"wiretide CPU s includes the Kafka broker's {wt.run.broker_cpu:,.2f} during the run")
        workers = wt.run.worker_cpu
        if workers:
            mean = sum(workers) / len(workers)
            print(
                "worker balance (CPU s each): "
                + " / ".join(f"{w:,.2f}" for w in workers)
                + f"; busiest/mean {workers[0] / mean if mean else 0:.2f}"
            )
        if wt.partition_bytes:
            total = sum(wt.partition_bytes) or 1
            shares = " / ".join(f"{b / total:.0%}" for b in wt.partition_bytes)
            print(f"segment bytes per partition: {shares} of {total / 1e6:,.0f} MB")
        print_timeline(wt.run.timeline)
        units = per_unit(cpu, wt.calls, packets)
        if units:
            parts = ", ".join(f"{k} {v:,.1f}" for k, v in sorted(units.items()))
            print(f"wiretide CPU us per unit (start-up included): {parts}")
        if wt.reported_calls is not None and wt.reported_calls != wt.calls:
            print(f"warning: tap reported {wt.reported_calls:,} but query finds {wt.calls:,}")
    if not (ts and wt):
        return 0
    ratio = _rate(wt.calls, wt.run.wall) / max(_rate(ts.calls, ts.run.wall), 1e-9)
    diff = wt.calls - ts.calls
    ok = abs(diff) <= tolerance * max(ts.calls, 1)
    cpu_ratio = (ts.run.cpu / max(ts.calls, 1)) / max(wt.run.cpu / max(wt.calls, 1), 1e-12)
    print(f"ratio wiretide/tshark calls/s: {ratio:.2f}x")
    print(
        f"ratio wiretide/tshark calls per CPU second: {cpu_ratio:.2f}x "
        f"({wt.run.cpu * 1e6 / max(wt.calls, 1):,.0f} vs {ts.run.cpu * 1e6 / max(ts.calls, 1):,.0f}"
        " us of CPU per call)"
    )
    print(
        f"calls match within {tolerance:.1%}: {'yes' if ok else 'NO'} "
        f"(wiretide {wt.calls:,} vs tshark {ts.calls:,}, diff {diff:+,})"
    )
    result["ratio"] = ratio
    result["cpu_ratio"] = cpu_ratio
    result["match"] = ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
