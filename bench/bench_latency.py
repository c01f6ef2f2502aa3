#!/usr/bin/env python3
"""Capture -> queryable latency of a live `wiretide tap` on loopback, per call rate.

    python bench/bench_latency.py [--rates 1000,10000] [--seconds 15] [--data DIR]

For each rate, in one run:

* nginx serves a small JSON answer on a free loopback port (not timed);
* `wiretide tap -i lo --port P --data DIR --ui-port 0` captures it live with its default
  workers and embedded chDB, on a broker started beforehand (`wiretide broker start`, a
  long-lived service, not counted); the load starts once the tap says it is capturing;
* a sender process makes real HTTP/1.1 calls at a fixed rate (open loop: call i is due
  at start + i/rate, on an idle keep-alive connection, pipelined only when none is idle),
  each with a unique path /lat/<tag>/<t|u>/<i>; every --track-every'th ("t") is timed:
  its send time is taken just before its bytes go out;
* a poller asks the tap's hub (GET /api/calls, as the UI does) every --poll seconds for
  timed calls stored since the oldest one not yet seen, and notes when each first shows
  up (the poll's answer time, so a poll's own duration counts against wiretide);
* after the last call, it polls until every timed call showed up (or --give-up seconds
  passed), stops the tap with SIGINT as Ctrl-C would, and counts every call of the rate
  with `wiretide query`: sent vs stored, none twice.

It prints, per rate: the achieved rate; p50/p99/max seconds from send to queryable (and
from the stored capture timestamp, a cross-check); calls sent vs stored; kernel drops;
CPU seconds of each wiretide process during the load (from /proc, start-up excluded), per
call and as a share of a core; and each process's peak RSS. Then where the time went, per
timed call: agent (send -> its segment batch produced, Kafka CreateTime), worker (-> its
call batch produced), sink (-> the sink's committed offset passed that message, which it
commits only after the insert; asked every 50 ms, and that ask lags on a busy machine
too, so a hub figure may dip below zero) and hub (-> first seen by a poll).
The reference, measured in the same run: the poll's own round trip (the floor of what
can be seen) and the sender's CPU, which competes for the same two cores.

Exit status: 0 every call sent was stored once; 1 some were missing or stored twice;
2 a tool is missing or failed. Latency targets are printed, never enforced (issue 14:
p99 <= 2 s at 1k calls/s, <= 5 s at 10k calls/s).
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import re
import secrets
import selectors
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from array import array
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.e2e import (  # noqa: E402
    BenchError,
    TreeSampler,
    _helper,
    _killpg,
    _last_lines,
    _short,
    broker_data,
    exit_status,
)
from wiretide.broker import free_port_pair  # noqa: E402

TARGET_P99_S = {1000: 2.0, 10000: 5.0}
CAPTURING_RE = re.compile(r"capturing on ")
UI_RE = re.compile(r"UI: http://localhost:(\d+)")
STORED_RE = re.compile(r"stored (\d+) calls in ([0-9.]+)s")
DROPS_RE = re.compile(r"kernel drops: (\d+) of (\d+)")
BROKER_RE = re.compile(r"(^|[/ ])java( |$)|kafka\.Kafka")


# ---------------------------------------------------------------------------------------
# The server: nginx answering every /lat/ path with a small JSON body
# ---------------------------------------------------------------------------------------


class Nginx:
    """nginx on 127.0.0.1:port, keep-alive for the whole run, no access log."""

    def __init__(self) -> None:
        if not shutil.which("nginx", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin"):
            raise BenchError("nginx not found: install it (apt-get install nginx-light)")
        self.port = free_port_pair()
        self.dir = Path(tempfile.mkdtemp(prefix="wiretide-latency-nginx-"))
        self.dir.chmod(0o755)  # workers run as nobody when started by root
        conf = self.dir / "nginx.conf"
        temps = "\n".join(
            f"    {kind}_temp_path {self.dir}/{kind};"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        conf.write_text(
            f"""worker_processes 1;
daemon off;
pid {self.dir}/nginx.pid;
error_log {self.dir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    keepalive_timeout 300;
    keepalive_requests 100000000;
{temps}
    server {{
        listen 127.0.0.1:{self.port};
        location /lat/ {{
            default_type application/json;
            return 200 '{{"ok":true,"service":"latency-bench"}}';
        }}
    }}
}}
"""
        )
        nginx = shutil.which("nginx", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
        self.proc = subprocess.Popen(
            [nginx, "-p", str(self.dir), "-c", str(conf), "-e", str(self.dir / "error.log")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                log = (self.dir / "error.log").read_text(errors="replace")
                raise BenchError(f"nginx did not start: {_last_lines(log)}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise BenchError(f"nginx did not listen on 127.0.0.1:{self.port} within 10 s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


# ---------------------------------------------------------------------------------------
# The sender: a process of its own (no GIL shared with the poller), open loop
# ---------------------------------------------------------------------------------------

_MARK = b"HTTP/1.1 "


def send_load(
    port: int, rate: int, seconds: float, conns: int, tag: str, track_every: int, out
) -> None:
    """Send rate*seconds calls; report ("start", wall time of call 0's due time), then
    ("done", results) on the pipe `out`."""
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(conns)]
    sel = selectors.DefaultSelector()
    for i, s in enumerate(socks):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sel.register(s, selectors.EVENT_READ, i)
    inflight = [0] * conns
    idle = list(range(conns))
    tails = [b""] * conns
    total = int(rate * seconds)
    sent_at = array("d")  # wall time each timed call went out, by i // track_every
    sent = answered = pipelined = 0
    behind = last_send = 0.0
    cpu0 = time.process_time()
    start_mono = time.monotonic() + 0.05
    start_wall = time.time() + (start_mono - time.monotonic())
    out.send(("start", start_wall))
    end = start_mono + seconds + 30.0  # answers still owed after the last send
    while (sent < total or answered < sent) and time.monotonic() < end:
        now = time.monotonic()
        due = min(total, int((now - start_mono) * rate) + 1) if now >= start_mono else 0
        if due > sent:
            behind = max(behind, now - (start_mono + sent / rate))
        while sent < due:
            if idle:
                c = idle.pop()
            else:
                c = min(range(conns), key=inflight.__getitem__)
                pipelined += 1
            kind = "t" if sent % track_every == 0 else "u"
            req = (
                f"GET /lat/{tag}/{kind}/{sent} HTTP/1.1\r\nHost: bench.local\r\n"
                "User-Agent: wiretide-latency/1\r\nAccept: application/json\r\n\r\n"
            ).encode()
            if kind == "t":
                sent_at.append(time.time())
            socks[c].sendall(req)
            inflight[c] += 1
            sent += 1
            last_send = time.monotonic()
        wait = (start_mono + sent / rate) - time.monotonic() if sent < total else 0.05
        for key, _ in sel.select(min(max(wait, 0.0), 0.005)):
            c = key.data
            chunk = socks[c].recv(1 << 16)
            if not chunk:
                raise SystemExit(f"nginx closed connection {c}")
            seen = tails[c] + chunk
            n = seen.count(_MARK)
            tails[c] = seen[-(len(_MARK) - 1) :]
            answered += n
            inflight[c] -= n
            if n and inflight[c] == 0:  # (a response's later chunks have no mark)
                idle.append(c)
    for s in socks:
        s.close()
    out.send(
        (
            "done",
            {
                "sent": sent,
                "answered": answered,
                "pipelined": pipelined,
                "max_behind_s": behind,
                "send_seconds": max(last_send - start_mono, 1e-9),
                "cpu_s": time.process_time() - cpu0,
                "sent_at": sent_at.tobytes(),
            },
        )
    )


# ---------------------------------------------------------------------------------------
# The poller: the tap's hub, as the UI reads it
# ---------------------------------------------------------------------------------------


@dataclass
class Poller:
    ui_port: int
    tag: str
    rate: int
    track_every: int
    interval: float
    give_up: float
    start_wall: float = 0.0  # call 0's due time, from the sender
    first_seen: dict[int, float] = field(default_factory=dict)  # timed i -> wall time
    capture_ns: dict[int, int] = field(default_factory=dict)  # timed i -> stored timestamp
    polls: int = 0
    rows: int = 0
    poll_seconds: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _lowest: int = 0  # the lowest timed index not seen yet (a hint; see `window_ns`)

    def window_ns(self, now: float) -> int | None:
        """Calls stored since the oldest timed call not seen yet (less a second of margin
        for the clocks of sender and kernel); None when every timed call due was seen.
        A call unseen for --give-up seconds no longer holds the window open."""
        step = self.track_every
        i = self._lowest
        while True:
            due = self.start_wall + i / self.rate
            if due > now:
                return None
            if i not in self.first_seen and now - due < self.give_up:
                self._lowest = i
                return int((due - 1.0) * 1e9)
            i += step

    def poll_once(self, conn: http.client.HTTPConnection) -> None:
        since = self.window_ns(time.time())
        if since is None:
            return
        prefix = f"/lat/{self.tag}/t/"
        q = f'request.path.startsWith("{prefix}") and timestamp_ns >= {since}'
        params = {"q": q, "limit": "1000"}
        t0 = time.perf_counter()
        for _ in range(50):  # pages
            conn.request("GET", "/api/calls?" + urllib.parse.urlencode(params))
            resp = conn.getresponse()
            body = resp.read()
            if resp.status != 200:
                raise BenchError(f"hub answered {resp.status}: {body[:200]!r}")
            page = json.loads(body)
            at = time.time()
            for call in page["calls"]:
                i = int(call["request"]["path"].rsplit("/", 1)[1])
                if i not in self.first_seen:
                    self.first_seen[i] = at
                    self.capture_ns[i] = call["timestamp_ns"]
            self.rows += len(page["calls"])
            if not page.get("next"):
                break
            params["before"] = page["next"]
        self.polls += 1
        self.poll_seconds.append(time.perf_counter() - t0)

    def run(self, stop: threading.Event) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.ui_port, timeout=60)
        while not stop.is_set():
            started = time.monotonic()
            try:
                self.poll_once(conn)
            except (OSError, http.client.HTTPException, BenchError) as ex:
                self.errors.append(str(ex))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.ui_port, timeout=60)
            stop.wait(max(0.0, self.interval - (time.monotonic() - started)))
        conn.close()


# ---------------------------------------------------------------------------------------
# Where the time goes: when each stage produced its Kafka message (CreateTime), and when
# the sink committed the call's message (it commits only after the insert: stored)
# ---------------------------------------------------------------------------------------


class CommitWatcher(threading.Thread):
    """Notes when the sink group's committed offset of each calls partition moves (asked
    every `interval` s, outside the group: it never joins it)."""

    def __init__(self, data: Path, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.data, self.interval = data, interval
        self.stop = threading.Event()
        self.moves: dict[int, list[tuple[float, int]]] = {}  # partition -> (wall, offset)
        self.errors = 0

    def run(self) -> None:
        from confluent_kafka import Consumer
        from confluent_kafka import TopicPartition as TP

        from schemas.config import Settings
        from wiretide.broker import local_broker

        settings = Settings.from_env(data=str(self.data))
        consumer = Consumer(
            {
                "bootstrap.servers": local_broker(settings).bootstrap,
                "group.id": settings.sink_group,
                "enable.auto.commit": False,
            }
        )
        try:
            topic = settings.calls_topic
            parts = list(consumer.list_topics(topic, timeout=30).topics[topic].partitions)
            tps = [TP(topic, p) for p in parts]
            while not self.stop.wait(self.interval):
                try:
                    got = consumer.committed(tps, timeout=5)
                except Exception:  # noqa: BLE001 - a slow coordinator: ask again
                    self.errors += 1
                    continue
                at = time.time()
                for tp in got:
                    seen = self.moves.setdefault(tp.partition, [])
                    if tp.offset >= 0 and (not seen or seen[-1][1] != tp.offset):
                        seen.append((at, tp.offset))
        finally:
            consumer.close()

    def stored_at(self, partition: int, offset: int) -> float | None:
        """When the commit past `offset` was first seen (None: not seen)."""
        for at, committed in self.moves.get(partition, ()):
            if committed > offset:
                return at
        return None


def _read_all(consumer, topic: str) -> list:
    """Every message of `topic` from the start (to the end of each partition)."""
    from confluent_kafka import KafkaError

    consumer.subscribe([topic])
    got, eofs, deadline = [], set(), time.monotonic() + 300
    parts: int | None = None
    while time.monotonic() < deadline:
        for msg in consumer.consume(num_messages=1000, timeout=1.0):
            err = msg.error()
            if err is None:
                got.append(msg)
            elif err.code() == KafkaError._PARTITION_EOF:
                eofs.add(msg.partition())
        if parts is None and consumer.assignment():
            parts = len(consumer.assignment())
        if parts is not None and len(eofs) >= parts:
            break
    consumer.unsubscribe()
    return got


def stage_times(data: Path, tag: str) -> tuple[dict[int, float], dict[int, tuple[float, int, int]]]:
    """Per timed call i: when the agent produced the segment batch with its request, and
    when a worker produced the call batch with it (wall seconds, Kafka CreateTime; with
    the call message's partition and offset)."""
    from confluent_kafka import Consumer

    from schemas.config import EOF_HEADER, Settings
    from schemas.serde import decode_call_batch, decode_segment_batch
    from wiretide.broker import local_broker

    settings = Settings.from_env(data=str(data))
    consumer = Consumer(
        {
            "bootstrap.servers": local_broker(settings).bootstrap,
            "group.id": f"latency-bench-{secrets.token_hex(4)}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "fetch.max.bytes": 64 << 20,
        }
    )
    request = re.compile(rb"GET /lat/" + re.escape(tag.encode()) + rb"/t/(\d+) ")
    path = re.compile("/lat/" + re.escape(tag) + r"/t/(\d+)$")
    segment_at: dict[int, float] = {}
    call_at: dict[int, tuple[float, int, int]] = {}
    try:
        for msg in _read_all(consumer, settings.segments_topic):
            if not msg.value() or EOF_HEADER in dict(msg.headers() or ()):
                continue
            at = msg.timestamp()[1] / 1000
            for seg in decode_segment_batch(msg.value()):
                for found in request.finditer(seg.payload):
                    segment_at.setdefault(int(found.group(1)), at)
        for msg in _read_all(consumer, settings.calls_topic):
            if not msg.value():
                continue
            at = msg.timestamp()[1] / 1000
            for call in decode_call_batch(msg.value()):
                found = path.search(call.path)
                if found:
                    call_at.setdefault(int(found.group(1)), (at, msg.partition(), msg.offset()))
    finally:
        consumer.close()
    return segment_at, call_at


# ---------------------------------------------------------------------------------------
# One rate
# ---------------------------------------------------------------------------------------


@dataclass
class RateResult:
    rate: int
    sent: int
    answered: int
    achieved_rate: float
    max_behind_s: float
    pipelined: int
    stored: int
    stored_twice: int
    latencies: list[float]  # send -> queryable, timed calls seen
    from_capture: list[float]  # stored capture timestamp -> queryable
    timed: int
    unseen: int
    kernel_drops: str
    cpu_s: dict[str, float]  # per process, during the load
    load_seconds: float
    rss_mb: dict[str, float]  # per process, peak
    sender_cpu_s: float
    poll_p50_s: float
    polls: int
    rows_per_poll: float
    tap_said: str
    load_average: tuple[float, float]  # 1-minute load average at the start and the end
    stages: dict[str, list[float]]  # stage -> seconds per timed call


def _pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(p / 100 * len(s) + 0.5) - 1))]


def _labels(sampler: TreeSampler) -> dict[int, str]:
    """A label per sampled process; processes sharing one are numbered (worker-1, -2)."""
    base = {pid: _short(sampler.names.get(pid, str(pid))) for pid in sampler.hwm}
    counts: dict[str, int] = {}
    for label in base.values():
        counts[label] = counts.get(label, 0) + 1
    seen: dict[str, int] = {}
    out = {}
    for pid in sorted(base):
        label = base[pid]
        if counts[label] > 1:
            seen[label] = seen.get(label, 0) + 1
            label = f"{label}-{seen[label]}"
        out[pid] = label
    return out


def start_tap(
    wiretide: list[str], port: int, data: Path, log: Path, extra: list[str]
) -> subprocess.Popen:
    cmd = [*wiretide, "tap", "-i", "lo", "--port", str(port), "--data", str(data)]
    cmd += ["--ui-port", "0", "--quiet", *extra]
    print(f"$ {shlex.join(cmd)}", flush=True)
    out = open(log, "wb")  # noqa: SIM115 - the tap's until it exits
    try:
        return subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
    finally:
        out.close()


def wait_capturing(proc: subprocess.Popen, log: Path, timeout: float) -> int:
    """The hub's port, once the tap captures and serves its UI (in either order)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        ui = UI_RE.search(text)
        if CAPTURING_RE.search(text) and ui:
            return int(ui.group(1))
        if "no UI" in text:
            raise BenchError(f"the tap serves no UI to poll: {_last_lines(text, 3)}")
        if proc.poll() is not None:
            raise BenchError(f"wiretide tap exited {proc.returncode}: {_last_lines(text, 3)}")
        time.sleep(0.1)
    raise BenchError(f"wiretide tap did not capture within {timeout:.0f} s (log: {log})")


def count_stored(wiretide: list[str], data: Path, tag: str, timeout: float) -> tuple[int, int]:
    """(distinct calls of `tag` stored, calls stored more than once), from `wiretide query`
    (one line per call; the path names the call)."""
    cmd = [*wiretide, "query", "--data", str(data), f'request.path.startsWith("/lat/{tag}/")']
    proc = _helper(cmd, "wiretide query", timeout)
    ids = re.findall(rf"/lat/{re.escape(tag)}/[tu]/(\d+)", proc.stdout)
    distinct = len(set(ids))
    return distinct, len(ids) - distinct


def stage_breakdown(
    sent_at: array,
    track_every: int,
    poller: Poller,
    segment_at: dict[int, float],
    call_at: dict[int, tuple[float, int, int]],
    commits: CommitWatcher,
) -> dict[str, list[float]]:
    """Seconds per stage of each timed call seen everywhere. A message's CreateTime is
    when produce() was called: a producer's linger counts in the next stage."""
    stages: dict[str, list[float]] = {}
    for k, at in enumerate(sent_at):
        i = k * track_every
        seen = poller.first_seen.get(i)
        if i not in segment_at or i not in call_at or seen is None:
            continue
        produced, partition, offset = call_at[i]
        stored = commits.stored_at(partition, offset)
        parts = [
            ("agent (wire -> segments produced)", segment_at[i] - at),
            ("worker (segments produced -> call produced)", produced - segment_at[i]),
        ]
        if stored is not None:
            parts += [
                ("sink (call produced -> stored and committed)", stored - produced),
                ("hub (stored -> seen by a poll)", seen - stored),
            ]
        else:
            parts.append(("sink+hub (call produced -> seen by a poll)", seen - produced))
        for name, seconds in parts:
            stages.setdefault(name, []).append(seconds)
    return stages


def run_rate(args: argparse.Namespace, wiretide: list[str], data: Path, port: int, rate: int):
    tag = f"{secrets.token_hex(3)}-{rate}"
    track_every = max(1, rate // args.timed_per_s)
    conns = args.connections or max(8, rate // 100)
    log = data / f"latency-tap-{rate}.log"
    print(f"\n== {rate:,} calls/s for {args.seconds:g} s: {conns} connections, 1 call in "
          f"{track_every} timed, paths /lat/{tag}/...", flush=True)  # fmt: skip
    tap = start_tap(wiretide, port, data, log, shlex.split(args.tap_args))
    sampler = TreeSampler(tap.pid, BROKER_RE, interval=0.1)
    commits = CommitWatcher(data)
    stop_polling = threading.Event()
    try:
        ui_port = wait_capturing(tap, log, args.start_timeout)
        sampler.start()
        commits.start()
        time.sleep(1.0)  # settle: the start-up's CPU is not the load's
        cpu0 = dict(sampler.cpu)
        ctx = multiprocessing.get_context("spawn")
        theirs, ours = ctx.Pipe(duplex=False)
        sender = ctx.Process(
            target=send_load,
            args=(port, rate, args.seconds, conns, tag, track_every, ours),
            daemon=True,
        )
        load_started = time.monotonic()
        load_before = os.getloadavg()[0]
        sender.start()
        ours.close()
        if not theirs.poll(60):
            raise BenchError("the sender did not start within 60 s")
        _, start_wall = theirs.recv()
        poller = Poller(ui_port, tag, rate, track_every, args.poll, args.give_up, start_wall)
        polling = threading.Thread(target=poller.run, args=(stop_polling,), daemon=True)
        polling.start()
        deadline = time.monotonic() + args.seconds + 120
        while not theirs.poll(0.5):
            if not sender.is_alive() or time.monotonic() > deadline:
                raise BenchError(f"the sender failed (exit {sender.exitcode})")
            if tap.poll() is not None:
                raise BenchError(f"wiretide tap exited {tap.returncode} under load (log: {log})")
        _, sent = theirs.recv()
        sender.join(10)
        timed = (sent["sent"] + track_every - 1) // track_every
        last_send = time.monotonic()
        while len(poller.first_seen) < timed and time.monotonic() - last_send < args.give_up:
            if tap.poll() is not None:
                raise BenchError(f"wiretide tap exited {tap.returncode} under load (log: {log})")
            time.sleep(0.2)
        stop_polling.set()
        polling.join(60)
        commits.stop.set()
        load_seconds = time.monotonic() - load_started
        load_after = os.getloadavg()[0]
        time.sleep(0.2)  # one more sample
        cpu1 = dict(sampler.cpu)
        labels = _labels(sampler)
        tap.send_signal(signal.SIGINT)  # as Ctrl-C: stop capturing, store the rest
        try:
            tap.wait(args.start_timeout)
        except subprocess.TimeoutExpired:
            raise BenchError(
                f"wiretide tap did not stop within {args.start_timeout:.0f} s"
            ) from None
    finally:
        stop_polling.set()
        commits.stop.set()
        sampler.stop.set()
        if tap.poll() is None:
            _killpg(tap.pid)
            tap.wait()
    text = log.read_text(errors="replace")
    if tap.returncode != 0:
        raise BenchError(f"wiretide tap exited {tap.returncode}: {_last_lines(text, 3)}")
    stored, twice = count_stored(wiretide, data, tag, args.start_timeout)
    sent_at = array("d")
    sent_at.frombytes(sent["sent_at"])
    latencies, from_capture = [], []
    for k, at in enumerate(sent_at):
        seen = poller.first_seen.get(k * track_every)
        if seen is not None:
            latencies.append(seen - at)
            from_capture.append(seen - poller.capture_ns[k * track_every] / 1e9)
    try:
        segment_at, call_at = stage_times(data, tag)
    except Exception as ex:  # a diagnosis only: the figures above stand without it
        print(f"stage breakdown unavailable: {type(ex).__name__}: {ex}")
        segment_at, call_at = {}, {}
    stages = stage_breakdown(sent_at, track_every, poller, segment_at, call_at, commits)
    drops = DROPS_RE.search(text)
    said = STORED_RE.search(text)
    if poller.errors:
        print(f"poller: {len(poller.errors)} failed polls, first: {poller.errors[0]}")
    return RateResult(
        rate=rate,
        sent=sent["sent"],
        answered=sent["answered"],
        achieved_rate=sent["sent"] / sent["send_seconds"],
        max_behind_s=sent["max_behind_s"],
        pipelined=sent["pipelined"],
        stored=stored,
        stored_twice=twice,
        latencies=latencies,
        from_capture=from_capture,
        timed=len(sent_at),
        unseen=len(sent_at) - len(latencies),
        kernel_drops=f"{drops.group(1)} of {drops.group(2)}" if drops else "?",
        cpu_s={labels[p]: cpu1.get(p, 0.0) - cpu0.get(p, 0.0) for p in labels},
        load_seconds=load_seconds,
        rss_mb={labels[p]: kb / 1024 for p, kb in sampler.hwm.items()},
        sender_cpu_s=sent["cpu_s"],
        poll_p50_s=_pct(poller.poll_seconds, 50),
        polls=poller.polls,
        rows_per_poll=poller.rows / max(poller.polls, 1),
        tap_said=said.group(0) if said else "no 'stored N calls' line",
        stages=stages,
        load_average=(load_before, load_after),
    )


def report(r: RateResult) -> None:
    print(
        f"sent {r.sent:,} calls ({r.achieved_rate:,.0f}/s, at most {r.max_behind_s * 1000:.0f} ms"
        f" behind schedule, {r.pipelined:,} pipelined), answered {r.answered:,}; "
        f"stored {r.stored:,} (missing {r.sent - r.stored:,}, twice {r.stored_twice:,}); "
        f"tap: {r.tap_said}; kernel drops {r.kernel_drops}"
    )
    target = TARGET_P99_S.get(r.rate)
    p99 = _pct(r.latencies, 99)
    verdict = (
        f" (target <= {target:g} s: {'met' if p99 <= target else 'NOT met'})" if target else ""
    )
    print(
        f"send -> queryable, {len(r.latencies):,} of {r.timed:,} timed calls seen: "
        f"p50 {_pct(r.latencies, 50):.2f} s, p99 {p99:.2f} s{verdict}, "
        f"max {max(r.latencies, default=float('nan')):.2f} s"
        + (f"; {r.unseen:,} not seen" if r.unseen else "")
    )
    print(
        f"stored capture timestamp -> queryable: p50 {_pct(r.from_capture, 50):.2f} s, "
        f"p99 {_pct(r.from_capture, 99):.2f} s"
    )
    print(
        f"reference: a poll's round trip p50 {r.poll_p50_s * 1000:.0f} ms ({r.polls} polls, "
        f"{r.rows_per_poll:,.0f} rows each); the sender used {r.sender_cpu_s:.2f} CPU s"
    )
    for stage, values in r.stages.items():
        print(
            f"  {stage}: p50 {_pct(values, 50):.2f} s, p99 {_pct(values, 99):.2f} s, "
            f"max {max(values):.2f} s"
        )
    parts = ", ".join(
        f"{k} {v:.2f} ({v / r.load_seconds:.0%} of a core, {v * 1e6 / max(r.sent, 1):,.0f} us/call)"
        for k, v in sorted(r.cpu_s.items())
    )
    print(f"CPU s over {r.load_seconds:.1f} s of load and drain: {parts}")
    print("peak RSS MB: " + ", ".join(f"{k} {v:,.0f}" for k, v in sorted(r.rss_mb.items())))
    print(
        f"machine: {os.cpu_count()} cores, load average {r.load_average[0]:.1f} at the start, "
        f"{r.load_average[1]:.1f} at the end (other work on it slows every stage)"
    )


def summary(results: list[RateResult]) -> None:
    head = ("calls/s", "sent", "stored", "p50 s", "p99 s", "max s", "CPU s", "peak RSS MB")
    rows = [
        (
            f"{r.rate:,}",
            f"{r.sent:,}",
            f"{r.stored:,}",
            f"{_pct(r.latencies, 50):.2f}",
            f"{_pct(r.latencies, 99):.2f}",
            f"{max(r.latencies, default=float('nan')):.2f}",
            f"{sum(r.cpu_s.values()):.2f}",
            f"{sum(r.rss_mb.values()):,.0f}",
        )
        for r in results
    ]
    widths = [max(len(x[i]) for x in [head, *rows]) for i in range(len(head))]
    print()
    for row in [head, *rows]:
        print("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description="Capture -> queryable latency of a live `wiretide tap` on loopback.",
        epilog="Exit status: 0 every call stored once, 1 calls missing or doubled, 2 failure.",
    )
    ap.add_argument("--rates", default="1000,10000", help="calls/s, comma separated")
    ap.add_argument("--seconds", type=float, default=15.0, help="load per rate (default 15)")
    ap.add_argument("--data", type=Path, help="wiretide data dir (default: a temporary one)")
    ap.add_argument("--wiretide", help="wiretide command (default: python -m wiretide)")
    ap.add_argument("--connections", type=int, help="keep-alive connections (default rate/100)")
    ap.add_argument("--timed-per-s", type=int, default=100, help="timed calls per second")
    ap.add_argument("--poll", type=float, default=0.1, help="seconds between polls")
    ap.add_argument("--give-up", type=float, default=60.0, help="seconds to wait for a call")
    ap.add_argument("--start-timeout", type=float, default=300.0, help="tap start/stop, s")
    ap.add_argument(
        "--tap-args", default="", help="more tap options, e.g. '--buffer 64 --workers 1'"
    )
    ap.add_argument("--keep-broker", action="store_true", help="leave the broker running")
    ap.add_argument("--json-out", type=Path, help="also write the results as JSON here")
    args = ap.parse_args(argv)
    try:
        rates = [int(r) for r in args.rates.split(",") if r.strip()]
        if not rates or min(rates) <= 0:
            raise ValueError
    except ValueError:
        msg = f"--rates {args.rates!r}: positive integers, e.g. 1000,10000"
        print(f"bench_latency: {msg}", file=sys.stderr)
        return 2
    for name in ("seconds", "poll", "give_up", "timed_per_s"):
        if getattr(args, name) <= 0:
            print(f"bench_latency: --{name.replace('_', '-')} must be positive", file=sys.stderr)
            return 2
    return exit_status("bench_latency", lambda: _main(args, rates))


def _main(args: argparse.Namespace, rates: list[int]) -> int:
    if os.geteuid() != 0 and not _has_net_raw():
        raise BenchError("live capture needs root or CAP_NET_RAW")
    wiretide = shlex.split(args.wiretide) if args.wiretide else [sys.executable, "-m", "wiretide"]
    results: list[RateResult] = []
    with broker_data(
        wiretide, args.data, "wiretide-latency-", start=True, keep=args.keep_broker
    ) as data:
        nginx = Nginx()
        try:
            print(f"nginx on 127.0.0.1:{nginx.port}", flush=True)
            for rate in rates:
                result = run_rate(args, wiretide, data, nginx.port, rate)
                report(result)
                results.append(result)
        finally:
            nginx.stop()
    summary(results)
    if args.json_out:
        args.json_out.write_text(json.dumps([_as_json(r) for r in results], indent=2) + "\n")
    bad = [r for r in results if r.stored != r.sent or r.stored_twice]
    return 1 if bad else 0


def _as_json(r: RateResult) -> dict:
    out = {k: v for k, v in r.__dict__.items() if k not in ("latencies", "from_capture", "stages")}
    named = [("latency", r.latencies), ("from_capture", r.from_capture), *r.stages.items()]
    for name, values in named:
        out[name] = {
            "p50_s": _pct(values, 50),
            "p99_s": _pct(values, 99),
            "max_s": max(values, default=None),
        }
    return out


def _has_net_raw() -> bool:
    status = Path("/proc/self/status").read_text()
    eff = int(re.search(r"CapEff:\s*([0-9a-f]+)", status).group(1), 16)
    return bool(eff & (1 << 13))  # CAP_NET_RAW


if __name__ == "__main__":
    sys.exit(main())
