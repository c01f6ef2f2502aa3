"""Start-up of a local `wiretide tap`: seconds from exec to its first line, to capture start
and to the first call stored, cold and warm, live and with --pcap.

  * cold: a fresh --data dir whose broker was never started (the jars are in the cache,
    and what install.sh prepares: the storage template and the broker's class archive; with
    --first-ever, a cache of the jars alone); its broker is stopped and the dir removed
    after the run;
  * warm: one --data dir whose broker already runs (started before the runs, not timed),
    reused by every run.

Per run: `first line` is the tap's first output line (what it waits for); `capture` is its
"capturing on ..." line (live) or "reading FILE" line (--pcap; n/a where a tap does not say
it); `stored` is when <data>/sink-status.json first counts a written call (queryable in the
store). Live runs capture `lo` on one port where this script serves HTTP and makes a call
every 0.1 s from exec on, and stop the tap (SIGINT) once a call is stored.

Reference, in the same run: tcpdump's seconds from exec to "listening on" (the capture a
user would otherwise start) and a bare interpreter's start. Wall seconds depend on how busy
the machine is (the load average is printed); compare runs of one sitting. Needs root for
live runs. Run:

    .venv/bin/python bench/bench_startup.py [--runs 3] [--kinds live,pcap] [--modes cold,warm]
        [--tree DIR]   # another source tree's wiretide (e.g. an older commit's), same venv
"""

from __future__ import annotations

import argparse
import http.server
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PCAP = ROOT / "tests" / "golden" / "e2e" / "http_basic.pcap"


@dataclass
class Run:
    kind: str
    mode: str
    first_line: float | None = None
    capture: float | None = None
    stored: float | None = None
    capture_cpu: float | None = None  # the tap process's CPU seconds at capture start
    exit_code: int | None = None
    lines: list[tuple[float, str]] = field(default_factory=list)


def _env(data: Path, cache: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WIRETIDE_")}
    env["WIRETIDE_DATA"] = str(data)
    if cache is not None:
        env["WIRETIDE_CACHE"] = str(cache)
    return env


def fresh_cache(where: Path) -> Path:
    """A jar cache as a machine has it before any broker ran: the jars (linked), no storage
    template, no class archive."""
    from wiretide.broker import cache_dir, fetch_jars

    cache_dir(str(where)).mkdir(parents=True)
    cache_dir(str(where)).joinpath("libs").symlink_to(fetch_jars())
    return where


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Quiet(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        body = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def _calls_until(port: int, stop: threading.Event) -> None:
    while not stop.wait(0.1):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/startup", timeout=2).read()
        except OSError:
            pass


def _cpu_seconds(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _written(data: Path) -> int:
    from schemas.runtime.sink_status import SinkStatus

    return SinkStatus.read(data).written


def run_tap(
    tree: Path, kind: str, mode: str, data: Path, timeout: float, cache: Path | None = None
) -> Run:
    run = Run(kind, mode)
    (data / "sink-status.json").unlink(missing_ok=True)  # the previous run's count
    server = stop_calls = None
    args = ["tap", "--no-ui", "--data", str(data)]
    if kind == "pcap":
        args += ["--pcap", str(PCAP)]
    else:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", _free_port()), _Quiet)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        args += ["-i", "lo", "--port", str(server.server_port), "--for", str(int(timeout))]
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "wiretide", *args],
        cwd=tree,
        env=_env(data, cache),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    if server is not None:
        stop_calls = threading.Event()
        threading.Thread(
            target=_calls_until, args=(server.server_port, stop_calls), daemon=True
        ).start()

    def read(stream) -> None:  # noqa: ANN001
        for line in stream:
            now = time.monotonic() - t0
            run.lines.append((now, line.rstrip()))
            if run.first_line is None:
                run.first_line = now
            if run.capture is None and line.startswith(("capturing on ", "reading ")):
                run.capture = now
                run.capture_cpu = _cpu_seconds(proc.pid)

    readers = [threading.Thread(target=read, args=(s,)) for s in (proc.stdout, proc.stderr)]
    for reader in readers:
        reader.start()
    try:
        while proc.poll() is None and time.monotonic() - t0 < timeout:
            if run.stored is None and _written(data) > 0:
                run.stored = time.monotonic() - t0
                if kind == "live":
                    proc.send_signal(signal.SIGINT)  # stored: stop and store the rest
            time.sleep(0.05)
        if run.stored is None and _written(data) > 0:
            run.stored = time.monotonic() - t0
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        run.exit_code = proc.wait(120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for reader in readers:
            reader.join()
        if stop_calls is not None:
            stop_calls.set()
        if server is not None:
            server.shutdown()
            server.server_close()
    return run


def _broker(tree: Path, verb: str, data: Path, cache: Path | None = None) -> None:
    subprocess.run(
        [sys.executable, "-m", "wiretide", "broker", verb, "--data", str(data)],
        cwd=tree,
        env=_env(data, cache),
        capture_output=True,
        timeout=300,
        check=verb == "start",
    )


def tcpdump_listening(port: int) -> float | None:
    """Seconds from exec until tcpdump says it listens on lo."""
    if shutil.which("tcpdump") is None:
        return None
    t0 = time.monotonic()
    proc = subprocess.Popen(
        ["tcpdump", "-i", "lo", "-w", "/dev/null", "tcp", "port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    said = None
    for line in proc.stderr:
        if "listening on" in line:
            said = time.monotonic() - t0
            break
    proc.terminate()
    proc.wait(30)
    return said


def broker_cpu(base: Path, archive: bool) -> float | None:
    """The broker JVM's CPU seconds from launch to accepting clients, with the cache's
    class archive or without one (a cache of the jars alone; the JVM is killed after, so
    it writes none). Storage comes from the template either way."""
    from wiretide.broker import LocalBroker, free_port_pair, prepare_cache

    cache = None if archive else str(fresh_cache(base / f"cpu-cache-{time.monotonic_ns()}"))
    if archive:
        prepare_cache()
    broker = LocalBroker(base / f"cpu-home-{time.monotonic_ns()}", free_port_pair(), cache=cache)
    broker.start()
    pid = broker.pid()
    spent = _cpu_seconds(pid) if pid is not None else None
    if pid is not None and not archive:
        os.kill(pid, signal.SIGKILL)
    broker.stop()
    return spent


def bare_python() -> float:
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    return time.monotonic() - t0


def _fmt(values: list[float | None]) -> str:
    got = [v for v in values if v is not None]
    if not got:
        return "n/a"
    each = " ".join(f"{v:.1f}" if v is not None else "-" for v in values)
    return f"median {statistics.median(got):5.1f}  ({each})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--kinds", default="live,pcap")
    ap.add_argument("--modes", default="cold,warm")
    ap.add_argument("--tree", type=Path, default=ROOT, help="source tree whose wiretide runs")
    ap.add_argument("--timeout", type=float, default=180.0)
    ap.add_argument("--verbose", action="store_true", help="print each run's lines")
    ap.add_argument(
        "--broker-cpu",
        type=int,
        default=0,
        metavar="N",
        help="also measure N times the broker's CPU seconds to start, with and without "
        "the class archive",
    )
    ap.add_argument(
        "--first-ever",
        action="store_true",
        help="cold runs each get a jar cache of their own with no storage template nor class "
        "archive (what a machine has before its first broker; install.sh makes both)",
    )
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    kinds, modes = args.kinds.split(","), args.modes.split(",")
    if "live" in kinds and os.geteuid() != 0:
        print("live runs need root: --kinds pcap", file=sys.stderr)
        return 2
    first = "; cold runs: first ever (fresh jar cache)" if args.first_ever else ""
    print(f"tree {args.tree}; load average at start {os.getloadavg()[0]:.1f}{first}", flush=True)
    results: list[Run] = []
    base = Path(tempfile.mkdtemp(prefix="wiretide-startup-"))
    warm = base / "warm"
    try:
        if "warm" in modes:
            _broker(args.tree, "start", warm)  # not timed: warm means already running
        for i in range(args.runs):
            for mode in modes:
                for kind in kinds:
                    data = warm if mode == "warm" else base / f"cold-{kind}-{i}"
                    cache = None
                    if mode == "cold" and args.first_ever:
                        cache = fresh_cache(base / f"cache-{kind}-{i}")
                    try:
                        run = run_tap(args.tree, kind, mode, data, args.timeout, cache)
                    finally:
                        if mode == "cold":
                            _broker(args.tree, "stop", data, cache)
                            shutil.rmtree(data, ignore_errors=True)
                    results.append(run)
                    print(
                        f"{mode:4s} {kind:4s} run {i + 1}: first line {run.first_line}, "
                        f"capture {run.capture} (tap CPU {run.capture_cpu}), stored {run.stored}, "
                        f"exit {run.exit_code}",
                        flush=True,
                    )
                    if args.verbose or run.exit_code != 0:
                        for at, line in run.lines:
                            print(f"    {at:6.2f} {line}")
    finally:
        if "warm" in modes:
            _broker(args.tree, "stop", warm)
        shutil.rmtree(base, ignore_errors=True)
    cpu: dict[bool, list[float | None]] = {True: [], False: []}
    if args.broker_cpu:
        cpu_base = Path(tempfile.mkdtemp(prefix="wiretide-broker-cpu-"))
        try:
            for _ in range(args.broker_cpu):
                for archive in (False, True):
                    cpu[archive].append(broker_cpu(cpu_base, archive))
        finally:
            shutil.rmtree(cpu_base, ignore_errors=True)
    print(f"\nseconds from exec (load average at end {os.getloadavg()[0]:.1f}):")
    for mode in modes:
        for kind in kinds:
            runs = [r for r in results if r.mode == mode and r.kind == kind]
            print(f"  {mode} {kind}:")
            print(f"    first line    {_fmt([r.first_line for r in runs])}")
            print(f"    capture start {_fmt([r.capture for r in runs])}")
            print(f"    tap CPU then  {_fmt([r.capture_cpu for r in runs])}")
            print(f"    first stored  {_fmt([r.stored for r in runs])}")
    refs = [tcpdump_listening(_free_port()) for _ in range(args.runs)]
    print(f"  reference: tcpdump -i lo to 'listening on' {_fmt(refs)}")
    print(f"  reference: bare '{Path(sys.executable).name} -c pass' {_fmt([bare_python()])}")
    if args.broker_cpu:
        print("broker JVM CPU seconds from launch to accepting clients:")
        print(f"  without the class archive {_fmt(cpu[False])}")
        print(f"  with the class archive    {_fmt(cpu[True])}")
    return 0 if all(r.exit_code == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
