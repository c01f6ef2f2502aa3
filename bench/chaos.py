"""Chaos: a seeded schedule of faults over a capture, compared with a clean run.

    .venv/bin/python bench/chaos.py --seed 7 --pcap load.pcap     # one schedule
    .venv/bin/python bench/chaos.py --minutes 30                  # a soak: schedules until done

Each schedule runs its own broker, a writer and `--workers` stream workers (restarted when
they die, as pods would be), publishes the capture, and injects faults as calls get
stored: SIGKILL/SIGTERM of a worker or the writer, a worker added or removed, the broker
stopped and started. After draining, the store is compared with the sans-IO pipeline's
clean run of the same capture by call id and contents. A failing schedule prints its seed;
`--seed` replays it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from wiretide.broker import LocalBroker  # noqa: E402
from wiretide.local import Supervisor, read_status, wait_until_stored  # noqa: E402

FAULTS = (
    "kill_worker",
    "term_worker",
    "add_worker",
    "remove_worker",
    "kill_writer",
    "term_writer",
    "restart_broker",
)


@dataclass
class Outcome:
    seed: int
    injected: Counter = field(default_factory=Counter)
    lost: int = 0
    duplicated: int = 0
    artefacts: int = 0
    changed: int = 0

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.artefacts or self.changed)


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


def plan(seed: int, faults: int) -> list[tuple[float, str]]:
    """(share of the calls stored, fault) in order: the schedule of one seed."""
    rng = random.Random(seed)
    return sorted((rng.uniform(0.05, 0.9), rng.choice(FAULTS)) for _ in range(faults))


def _free_port() -> int:
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        with socket.socket() as s2:
            if port < 65000 and s2.connect_ex(("127.0.0.1", port + 1)) != 0:
                return port
    raise RuntimeError("no free port pair")


def _wiretide(args: list[str], env: dict[str, str], timeout: float = 600) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "wiretide", *args],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"wiretide {args[0]} exited {proc.returncode}: {proc.stderr[-500:]}")
    return proc.stdout


class Schedule:
    """One seeded run: its broker, its processes, its faults."""

    def __init__(self, seed: int, home: Path, workers: int) -> None:
        self.seed, self.home, self.rng = seed, home, random.Random(seed)
        self.data = home / "data"
        self.broker = LocalBroker(home / "kafka", port=_free_port())
        self.bootstrap = self.broker.start()
        self.env = dict(os.environ, WIRETIDE_KAFKA=self.bootstrap)
        self.env["WIRETIDE_DATA"] = str(self.data)
        from wiretide.topics import ensure_topics

        ensure_topics(self.bootstrap)
        roles = {"sink": [], **{f"worker-{i + 1}": [] for i in range(workers)}}
        self.supervisor = Supervisor(self.bootstrap, self.data, roles, max_restarts=1000)
        self.next_worker = workers + 1
        self._written: dict[int, int] = {}  # writer pid -> calls it stored

    def stored(self) -> int:
        """Calls stored so far by every writer process (a restarted one counts from 0)."""
        status = read_status(self.data)
        if "pid" in status:
            self._written[status["pid"]] = status.get("written", 0)
        return sum(self._written.values())

    def _workers(self) -> list[str]:
        return [r for r in self.supervisor.procs if r.startswith("worker")]

    def inject(self, fault: str) -> None:
        sup = self.supervisor
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
        agent = subprocess.Popen(
            [sys.executable, "-m", "wiretide", "agent", "--pcap", str(capture)],
            env=self.env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            for share, fault in plan(self.seed, faults):
                deadline = time.monotonic() + 600
                while self.stored() < share * len(clean):
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"seed {self.seed}: no progress before {fault}")
                    self.supervisor.check()
                    time.sleep(0.1)
                self.inject(fault)
                outcome.injected[fault] += 1
            if agent.wait(600) != 0:
                raise RuntimeError(f"seed {self.seed}: the agent exited {agent.returncode}")
            wait_until_stored(self.bootstrap, self.supervisor, stall_timeout=300)
        finally:
            if agent.poll() is None:
                agent.kill()
            self.supervisor.stop()
        out = _wiretide(["query", "--json", "--data", str(self.data)], self.env)
        diff = compare(clean, [json.loads(line) for line in out.splitlines()])
        outcome.lost, outcome.duplicated = len(diff["lost"]), len(diff["duplicated"])
        outcome.artefacts, outcome.changed = len(diff["artefacts"]), len(diff["changed"])
        return outcome

    def close(self) -> None:
        self.broker.stop()


def run_schedule(seed: int, capture: Path, clean: list[dict], faults: int, workers: int) -> Outcome:
    with tempfile.TemporaryDirectory(prefix=f"chaos-{seed}-") as tmp:
        schedule = Schedule(seed, Path(tmp), workers)
        try:
            return schedule.run(capture, clean, faults)
        finally:
            schedule.close()


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
    seeds = [args.seed] if args.seed is not None else None
    until = time.monotonic() + args.minutes * 60
    totals: Counter = Counter()
    failed = []
    lost = duplicated = artefacts = changed = 0
    while True:
        seed = seeds.pop() if seeds else random.randrange(1 << 31)
        outcome = run_schedule(seed, capture, clean, args.faults, args.workers)
        totals.update(outcome.injected)
        lost, duplicated = lost + outcome.lost, duplicated + outcome.duplicated
        artefacts, changed = artefacts + outcome.artefacts, changed + outcome.changed
        faults = ", ".join(f"{k} {v}" for k, v in sorted(outcome.injected.items()))
        verdict = "ok" if outcome.ok else "FAILED"
        print(
            f"seed {seed}: {verdict} ({faults}): lost {outcome.lost}, duplicated "
            f"{outcome.duplicated}, artefacts {outcome.artefacts}, changed {outcome.changed}",
            flush=True,
        )
        if not outcome.ok:
            failed.append(seed)
        if seeds is not None or time.monotonic() >= until:
            break
    print("injected: " + ", ".join(f"{k} {v}" for k, v in sorted(totals.items())))
    print(f"lost {lost}, duplicated {duplicated}, artefacts {artefacts}, changed {changed}")
    if failed:
        print("failing seeds (replay with --seed): " + " ".join(map(str, failed)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
