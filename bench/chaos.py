"""Chaos: a seeded schedule of faults over a capture, compared with a clean run.

    .venv/bin/python bench/chaos.py --seed 7 --pcap load.pcap     # one schedule
    .venv/bin/python bench/chaos.py --minutes 30                  # a soak: schedules until done

Each schedule runs its own broker, a writer and `--workers` stream workers (restarted when
they die, as pods would be), publishes the capture, and injects faults as calls get
stored: SIGKILL/SIGTERM of a worker, the writer or the producer (`agent --pcap`, started
again from the capture's start, as a restarted pod would), a worker added or removed, the
broker stopped and started, the store unwritable for a while (its tmpfs full, or read-only;
needs root to mount). After draining, nothing may be dead-lettered, and the store is
compared with the sans-IO pipeline's clean run of the same capture by call id and contents.
A failing schedule prints its seed; `--seed` replays it.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from schemas.config import DLQ_SUFFIX, Settings  # noqa: E402
from schemas.runtime.sink_status import SinkStatus  # noqa: E402
from wiretide.broker import LocalBroker, free_port_pair  # noqa: E402
from wiretide.local import (  # noqa: E402
    Supervisor,
    group_lag,
    wait_until_stored,
)

FAULTS = (
    "kill_worker",
    "term_worker",
    "add_worker",
    "remove_worker",
    "kill_writer",
    "term_writer",
    "restart_broker",
    "kill_producer",
    "term_producer",
    "fill_store",
    "readonly_store",
)
STORE_FAULTS = ("fill_store", "readonly_store")
STORE_SIZE = "512m"  # the store's tmpfs: room for the soak's 100k calls


def store_faults_possible() -> bool:
    """Mounting the store's tmpfs needs root (and `mount`)."""
    return os.geteuid() == 0 and shutil.which("mount") is not None


def fault_kinds() -> tuple[str, ...]:
    return FAULTS if store_faults_possible() else tuple(set(FAULTS) - set(STORE_FAULTS))


@dataclass
class Outcome:
    seed: int
    injected: Counter = field(default_factory=Counter)
    lost: int = 0
    duplicated: int = 0
    artefacts: int = 0
    changed: int = 0
    dead_lettered: int = 0

    @property
    def ok(self) -> bool:
        return not (
            self.lost or self.duplicated or self.artefacts or self.changed or self.dead_lettered
        )


def compare(clean: list[dict], stored: list[dict]) -> dict[str, list]:
    """What a faulty run got wrong against a clean one, by call id."""
    want = {c["id"]: c for c in clean}
    got: dict[str, dict] = {}
    twice = []
    for call in stored:
        if call["id"] in got:
            twice.append(call["id"])
        got[call["id"]] = call
    return {
        "lost": sorted(set(want) - set(got)),
        "duplicated": twice,
        "artefacts": sorted((c["flags"], c["id"]) for i, c in got.items() if i not in want),
        "changed": sorted(i for i in set(want) & set(got) if want[i] != got[i]),
    }


def clean_run(capture: Path) -> list[dict]:
    from tests.golden.protocols.dissect import dissect_pcap

    return dissect_pcap(capture)


def plan(seed: int, faults: int, kinds: tuple[str, ...] = FAULTS) -> list[tuple[float, str]]:
    """(share of the calls stored, fault) in order: the schedule of one seed."""
    rng = random.Random(seed)
    return sorted((rng.uniform(0.05, 0.9), rng.choice(kinds)) for _ in range(faults))


def _wiretide(args: list[str], env: dict[str, str], timeout: float = 600) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "wiretide", *args],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"wiretide {args[0]} exited {proc.returncode}: {proc.stderr[-500:]}")
    return proc.stdout


def _messages(bootstrap: str, topic: str) -> int:
    """Messages in `topic` (every partition): a dead-letter topic's count."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "chaos-count"})
    try:
        parts = consumer.list_topics(topic, timeout=30).topics[topic].partitions
        marks = [consumer.get_watermark_offsets(TopicPartition(topic, p), 30) for p in parts]
        return sum(high - low for low, high in marks)
    finally:
        consumer.close()


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True, timeout=30)


class Store:
    """The embedded store on a tmpfs of its own, so it can be made full, and its tables on
    a second one inside, so they can be made read-only (chDB keeps a `status` file open
    for writing in the store's dir, which keeps that mount from going read-only)."""

    def __init__(self, data: Path) -> None:
        self.root, self.tables = data / "chdb", data / "chdb" / "store"
        self.root.mkdir(parents=True)
        _mount("-t", "tmpfs", "-o", f"size={STORE_SIZE}", "chaos-store", str(self.root))
        self.tables.mkdir()
        _mount("-t", "tmpfs", "-o", f"size={STORE_SIZE}", "chaos-tables", str(self.tables))
        self.filler = self.root / ".chaos-filler"  # not a database dir: chDB ignores it

    def fill(self) -> None:
        """Take every free byte of the store's disk, where chDB checks for room before an
        insert. (Filling only the tables' mount, where that check does not look, makes
        chDB 4.4 commit empty parts and report the insert done: a defect, not tested.)"""
        with open(self.filler, "wb", buffering=0) as f:
            for chunk in (b"\0" * (1 << 20), b"\0" * 4096):
                try:
                    while True:
                        f.write(chunk)
                except OSError as ex:
                    if ex.errno != errno.ENOSPC:
                        raise

    def read_only(self, keep_going: Callable[[], None]) -> None:
        """Remount the tables read-only; busy while an insert writes a part: try again."""
        deadline = time.monotonic() + 60
        while True:
            try:
                return _mount("-o", "remount,ro", str(self.tables))
            except subprocess.CalledProcessError:
                if time.monotonic() > deadline:
                    busy = f"{self.tables} stayed busy: cannot make it read-only"
                    raise RuntimeError(busy) from None
                keep_going()
                time.sleep(0.05)

    def writable(self) -> None:
        _mount("-o", "remount,rw", str(self.tables))
        self.filler.unlink(missing_ok=True)

    def close(self) -> None:
        for path in (self.tables, self.root):
            subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30)


class Schedule:
    """One seeded run: its broker, its processes, its faults."""

    def __init__(self, seed: int, home: Path, workers: int) -> None:
        self.seed, self.home, self.rng = seed, home, random.Random(seed)
        self.data = home / "data"
        self.kinds = fault_kinds()
        self.store = Store(self.data) if store_faults_possible() else None
        self.broker = LocalBroker(home / "kafka", port=free_port_pair())
        try:
            self.bootstrap = self.broker.start()
        except BaseException:
            if self.store is not None:
                self.store.close()
            raise
        self.settings = Settings.from_env(kafka=self.bootstrap, data=self.data)
        self.env = self.settings.child_env()
        from schemas.runtime.topics import ensure_topics

        ensure_topics(self.settings)
        roles = {"sink": [], **{f"worker-{i + 1}": [] for i in range(workers)}}
        self.supervisor = Supervisor(self.settings, roles, max_restarts=1000)
        self.next_worker = workers + 1
        self._written: dict[int, int] = {}  # writer pid -> calls it stored
        self.capture: Path | None = None
        self.agent: subprocess.Popen | None = None

    def stored(self) -> int:
        """Calls stored so far by every writer process (a restarted one counts from 0)."""
        status = SinkStatus.read(self.data)
        if status.pid is not None:
            self._written[status.pid] = status.written
        return sum(self._written.values())

    def _drained(self) -> bool:
        """The capture is published and every segment and call committed by its stage."""
        return self.agent.poll() is not None and all(
            group_lag(self.settings, group, topic) == 0
            for group, topic in (
                (self.settings.streams_group, self.settings.segments_topic),
                (self.settings.sink_group, self.settings.calls_topic),
            )
        )

    def _log_tails(self) -> str:
        logs = self.data / "logs"
        return " | ".join(
            f"{log.name}: " + " / ".join(log.read_text(errors="replace").splitlines()[-3:])
            for log in sorted(logs.glob("*.log"))
        )

    def _workers(self) -> list[str]:
        return [r for r in self.supervisor.procs if r.startswith("worker")]

    def _start_agent(self) -> None:
        """Publish the capture from its start: what a restarted producer does (it keeps
        no position), so a worker sees segments again and must store each call once."""
        logs = self.data / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        with open(logs / "agent.log", "ab") as log:  # its tail goes into a failure's reason
            self.agent = subprocess.Popen(
                [sys.executable, "-m", "wiretide", "agent", "--pcap", str(self.capture)],
                env=self.env, cwd=ROOT, stdout=log, stderr=log,
            )  # fmt: skip

    def _hold(self, seconds: float) -> None:
        """Let the pipeline run (restarting what dies) for a while."""
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            self.supervisor.check()
            time.sleep(0.1)

    def _signal_producer(self, sig: signal.Signals) -> None:
        """Stop the producer mid-publish and start it again. One that has published the
        whole capture already is started again first: it dies part way through a replay."""
        assert self.agent is not None
        if self.agent.poll() is not None:
            self._start_agent()
            self._hold(self.rng.uniform(0.5, 3))
        self.agent.send_signal(sig)
        self.agent.wait(60)
        self._start_agent()

    def inject(self, fault: str) -> None:
        sup = self.supervisor
        if fault in ("kill_producer", "term_producer"):
            self._signal_producer(signal.SIGKILL if fault == "kill_producer" else signal.SIGTERM)
            return
        if fault in STORE_FAULTS:
            assert self.store is not None
            if fault == "fill_store":
                self.store.fill()
            else:
                self.store.read_only(sup.check)
            self._hold(self.rng.uniform(2, 8))
            self.store.writable()
            return
        if fault in ("kill_worker", "term_worker", "kill_writer", "term_writer"):
            role = "sink" if "writer" in fault else self.rng.choice(self._workers())
            sig = signal.SIGKILL if fault.startswith("kill") else signal.SIGTERM
            sup.procs[role].send_signal(sig)  # the supervisor starts it again
        elif fault == "add_worker":
            role = f"worker-{self.next_worker}"
            self.next_worker += 1
            sup.roles[role] = []
            sup.restarts[role] = 0
            sup.procs[role] = sup._spawn(role)
        elif fault == "remove_worker":
            if len(self._workers()) > 1:
                role = self.rng.choice(self._workers())
                proc = sup.procs.pop(role)
                del sup.roles[role], sup.restarts[role]
                proc.send_signal(signal.SIGTERM)
                proc.wait(60)
        elif fault == "restart_broker":
            self.broker.stop()
            time.sleep(self.rng.uniform(0.5, 5))
            self.broker.start()

    def run(self, capture: Path, clean: list[dict], faults: int) -> Outcome:
        outcome = Outcome(self.seed)
        self.capture = capture
        self._start_agent()
        try:
            for share, fault in plan(self.seed, faults, self.kinds):
                deadline, next_drain_check = time.monotonic() + 600, time.monotonic() + 5
                while self.stored() < share * len(clean):
                    now = time.monotonic()
                    if now > deadline:
                        raise RuntimeError(
                            f"seed {self.seed}: no progress before {fault}; {self._log_tails()}"
                        )
                    if now > next_drain_check:
                        # A writer killed between two status writes leaves its last calls
                        # uncounted: a drained pipeline is as far as the count can get.
                        if self._drained():
                            break
                        next_drain_check = now + 5
                    self.supervisor.check()
                    time.sleep(0.1)
                self.inject(fault)
                outcome.injected[fault] += 1
            agent = self.agent
            if agent.wait(600) != 0:
                raise RuntimeError(
                    f"seed {self.seed}: the agent exited {agent.returncode}; {self._log_tails()}"
                )
            wait_until_stored(self.supervisor, stall_timeout=300)
            outcome.dead_lettered = sum(
                _messages(self.bootstrap, topic + DLQ_SUFFIX)
                for topic in (self.settings.segments_topic, self.settings.calls_topic)
            )
        finally:
            if self.agent.poll() is None:
                self.agent.kill()
            self.supervisor.stop()
        out = _wiretide(["query", "--json", "--data", str(self.data)], self.env)
        diff = compare(clean, [json.loads(line) for line in out.splitlines()])
        outcome.lost, outcome.duplicated = len(diff["lost"]), len(diff["duplicated"])
        outcome.artefacts, outcome.changed = len(diff["artefacts"]), len(diff["changed"])
        return outcome

    def close(self) -> None:
        self.broker.stop()
        if self.store is not None:
            self.store.close()


def run_schedule(seed: int, capture: Path, clean: list[dict], faults: int, workers: int) -> Outcome:
    with tempfile.TemporaryDirectory(prefix=f"chaos-{seed}-") as tmp:
        schedule = Schedule(seed, Path(tmp), workers)
        try:
            return schedule.run(capture, clean, faults)
        finally:
            schedule.close()


COUNTS = ("lost", "duplicated", "artefacts", "changed", "dead_lettered")


def fault_table(outcomes: list[Outcome]) -> list[str]:
    """Per fault kind: injected, schedules it was in, and the wrong calls of those
    schedules (a schedule's count shows under each kind it injected)."""
    head = f"{'fault':16}{'injected':>9}{'schedules':>10}" + "".join(f"{c:>14}" for c in COUNTS)
    rows = [head]
    for kind in FAULTS:
        hit = [o for o in outcomes if o.injected[kind]]
        row = f"{kind:16}{sum(o.injected[kind] for o in hit):>9}{len(hit):>10}"
        rows.append(row + "".join(f"{sum(getattr(o, c) for o in hit):>14}" for c in COUNTS))
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, help="replay this schedule (default: random seeds)")
    ap.add_argument("--pcap", type=Path, help="capture (default: make one with make_capture.sh)")
    ap.add_argument("--calls", type=int, default=100_000, help="calls in a capture made here")
    ap.add_argument("--faults", type=int, default=4, help="faults per schedule")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--minutes", type=float, default=0, help="soak: schedules until this long")
    args = ap.parse_args()
    capture = args.pcap
    if capture is None:
        capture = Path(tempfile.mkdtemp(prefix="chaos-capture-")) / "load.pcap"
        subprocess.run(
            ["bash", str(ROOT / "bench" / "make_capture.sh"), "--calls", str(args.calls),
             str(capture), "60", "8"],
            check=True, capture_output=True,
        )  # fmt: skip
    clean = clean_run(capture)
    print(f"capture {capture}: {len(clean)} calls in the clean run", flush=True)
    if not store_faults_possible():
        print("not root: no store faults (mounting the store's tmpfs needs root)", flush=True)
    seeds = [args.seed] if args.seed is not None else None
    until = time.monotonic() + args.minutes * 60
    outcomes: list[Outcome] = []
    while True:
        seed = seeds.pop() if seeds else random.randrange(1 << 31)
        outcome = run_schedule(seed, capture, clean, args.faults, args.workers)
        outcomes.append(outcome)
        faults = ", ".join(f"{k} {v}" for k, v in sorted(outcome.injected.items()))
        counts = ", ".join(f"{c} {getattr(outcome, c)}" for c in COUNTS)
        verdict = "ok" if outcome.ok else "FAILED"
        print(f"seed {seed}: {verdict} ({faults}): {counts}", flush=True)
        if seeds is not None or time.monotonic() >= until:
            break
    print("\n".join(fault_table(outcomes)))
    totals = ", ".join(f"{c} {sum(getattr(o, c) for o in outcomes)}" for c in COUNTS)
    print(f"{len(outcomes)} schedules: {totals}")
    failed = [o.seed for o in outcomes if not o.ok]
    if failed:
        print("failing seeds (replay with --seed): " + " ".join(map(str, failed)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
