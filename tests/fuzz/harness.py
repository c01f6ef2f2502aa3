"""The in-process fuzz harness: hostile flows (mutated golden transcripts) on every port
the registry knows, interleaved with good flows, through the pure Pipeline (reassembly,
dissection, redaction), then Avro (encode and decode a batch per flow, as the worker and
sink do), Arrow and a real chDB insert.

Invariants (a break is a `Finding`): no exception escapes any stage, and no dissector
reports one it caught ("internal dissector error"); every call survives Avro (a clamped
field stays clamped); every call converts to Arrow and inserts; the pipeline holds nothing
once its input ended; the good flows give exactly the calls of a clean run of them alone.
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
import traceback
import tracemalloc
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from schemas.records import ACK, PSH, SYN, ApiCall, Segment, flow_id
from schemas.serde import decode_call_batch, encode_call_batch
from sinks.clickhouse.arrow import calls_to_arrow
from sinks.clickhouse.connect import Store
from sinks.clickhouse.writer import CallWriter
from streams.dissect.registry import default_registry, transports
from streams.pipeline import Pipeline, Processed
from streams.redact import RedactionPolicy
from tests.fuzz.corpus import GOLDEN, SERVER_IP, Transcript, replay, seed_corpus
from tests.fuzz.mutate import mutate, wire

FINDINGS_DIR = GOLDEN / "fuzz"
TS0 = 1_780_000_000 * 10**9  # 2026-05-28: fixed, so call ids are the same every run
PLAIN_PORT = 7777  # no dissector's hint: the probes decide
INTERNAL = "internal dissector error: "


def ports(transport: str) -> tuple[int, ...]:
    """Every port a dissector hints for `transport`, and one no dissector claims."""
    found = {p for f in default_registry().factories if transport in transports(f) for p in f.ports}
    return (*sorted(found), PLAIN_PORT)


def protocol_of(t: Transcript) -> str:
    """The seed's protocol (its golden folder); `http` for the e2e HTTP capture."""
    folder = t.name.split("/")[0]
    return "http" if folder == "e2e" else folder


@dataclass(frozen=True, slots=True)
class Placed:
    """A transcript on one connection of its own."""

    transcript: Transcript
    client_port: int
    server_port: int
    ts0: int
    good: bool = False
    client_ip: str = "10.8.0.1"
    noise: int = 0  # seeds `mutate.wire` on the segments (TCP); 0: none

    def segments(self) -> list[Segment]:
        t = self.transcript
        segs = replay(t, self.client_ip, self.client_port, self.server_port, self.ts0)
        if self.noise and t.transport == "tcp":
            segs = wire(random.Random(self.noise), segs)
        return segs

    @property
    def flow_id(self) -> str:
        t = self.transcript.transport
        return flow_id(self.client_ip, self.client_port, SERVER_IP, self.server_port, t)


@dataclass(frozen=True, slots=True)
class Finding:
    stage: str  # pipeline | finish | internal | avro | arrow | insert | leftover | good_calls
    error: str  # one line: exception type, where it was raised, message
    flow: Placed | None

    @property
    def signature(self) -> str:
        """What tells two findings apart: the stage and where it failed, not the data."""
        return f"{self.stage}: {self.error.split(': ')[0]}"[:120]


@dataclass(slots=True)
class Outcome:
    calls: dict[str, list[ApiCall]] = field(default_factory=lambda: defaultdict(list))
    findings: list[Finding] = field(default_factory=list)
    stored: set[str] = field(default_factory=set)  # call ids inserted


def describe(ex: BaseException) -> str:
    """`Type at file:line: message` of the innermost frame in the project."""
    where = ""
    for frame in reversed(traceback.extract_tb(ex.__traceback__)):
        if "/site-packages/" not in frame.filename:
            where = f" at {Path(frame.filename).name}:{frame.lineno}"
            break
    message = (str(ex).strip().splitlines() or [""])[0][:200]
    return f"{type(ex).__name__}{where}: {message}"


def run(flows: Sequence[Placed], store: Store | None, rng: random.Random | None = None) -> Outcome:
    """Feed `flows` interleaved segment by segment (in an order drawn from `rng`; in turn
    when None) through one Pipeline and on through the encode path into `store`."""
    out = Outcome()
    by_fid = {f.flow_id: f for f in flows}
    queues = [list(reversed(f.segments())) for f in flows]
    broken: set[int] = set()
    pipe = Pipeline(default_registry(), RedactionPolicy.default())
    live = [i for i, q in enumerate(queues) if q]
    token = 0
    while live:
        k = rng.randrange(len(live)) if rng else token % len(live)
        i = live[k]
        seg = queues[i].pop()
        if not queues[i]:
            live.pop(k)
        if i in broken:
            continue
        token += 1
        try:
            processed = pipe.process(token, [seg])
        except Exception as ex:
            out.findings.append(Finding("pipeline", describe(ex), flows[i]))
            broken.add(i)
            continue
        _collect(processed, out, by_fid)
    try:
        _collect(pipe.finish(), out, by_fid)
    except Exception as ex:
        out.findings.append(Finding("finish", describe(ex), None))
    leftover = (len(pipe.dissectors), pipe.held_tokens, pipe.reassembler.active_flows)
    if any(leftover):
        out.findings.append(Finding("leftover", f"dissectors, tokens, flows: {leftover}", None))
    _encode_and_store(out, by_fid, store)
    return out


def _collect(processed: Processed, out: Outcome, by_fid: dict[str, Placed]) -> None:
    for call in processed.calls:
        out.calls[call.flow_id].append(call)
    for failed in processed.failures:  # a bug a dissector caught at its boundary
        if failed.reason.startswith(INTERNAL):
            error = f"{failed.protocol} {failed.reason[len(INTERNAL) :][:200]}"
            out.findings.append(Finding("internal", error, by_fid.get(failed.flow_id)))


def _encode_and_store(out: Outcome, by_fid: dict[str, Placed], store: Store | None) -> None:
    decoded: list[ApiCall] = []
    for fid, calls in out.calls.items():
        try:
            back = decode_call_batch(encode_call_batch(fid, calls))
            # The encoder may clamp a field (and flag it); what it gives must then be stable.
            if [c.call_id for c in back] != [c.call_id for c in calls] or back != (
                decode_call_batch(encode_call_batch(fid, back))
            ):
                raise AssertionError("calls changed through Avro")
        except Exception as ex:
            out.findings.append(Finding("avro", describe(ex), by_fid.get(fid)))
            continue
        decoded += back
    if not decoded:
        return
    stage = "arrow"
    try:
        calls_to_arrow(decoded)
        if store is not None:
            stage = "insert"
            CallWriter(store).write(decoded)
        out.stored.update(c.call_id for c in decoded)
    except Exception as ex:  # which flow's calls break it?
        blamed = False
        for fid, calls in out.calls.items():
            try:
                calls_to_arrow(calls)
                if store is not None:
                    CallWriter(store).write(calls)
                out.stored.update(c.call_id for c in calls)
            except Exception as one:
                blamed = True
                out.findings.append(Finding(stage, describe(one), by_fid.get(fid)))
        if not blamed:
            out.findings.append(Finding(stage, describe(ex), None))


def good_flows(corpus: Sequence[Transcript], first_port: int, ts0: int) -> list[Placed]:
    """Every seed transcript, unmutated, on its own captured port."""
    return [
        Placed(t, first_port + n, t.server_port, ts0 + n * 10**9, good=True, client_ip="10.7.0.1")
        for n, t in enumerate(corpus)
    ]


def hostile_flows(
    rng: random.Random, corpus: Sequence[Transcript], count: int, first_port: int, ts0: int
) -> list[Placed]:
    """`count` mutated transcripts, each on a port drawn from every port a dissector
    hints for its transport (or the seed's own)."""
    out = []
    for n in range(count):
        t = mutate(rng, rng.choice(corpus), corpus)
        port = rng.choice((*ports(t.transport), t.server_port))
        noise = rng.getrandbits(31) + 1 if rng.random() < 0.3 else 0
        out.append(Placed(t, first_port + n, port, ts0 + n * 10**9, noise=noise))
    return out


def check_round(
    seed: int, hostile: int, store: Store | None, corpus: Sequence[Transcript] | None = None
) -> Outcome:
    """One deterministic round: `hostile` flows of `seed` mixed with every good flow; the
    good flows' calls must equal those of a clean run of them alone."""
    corpus = corpus or seed_corpus()
    rng = random.Random(seed)
    good = good_flows(corpus, 20_000, TS0)
    bad = hostile_flows(rng, corpus, hostile, 30_000, TS0 + 7 * 10**9)
    # Each round's hostile flows on addresses of their own: call ids never repeat across rounds.
    bad = [replace(f, client_ip=f"10.8.{seed // 250 % 250}.{seed % 250 + 1}") for f in bad]
    mixed = [*good, *bad]
    rng.shuffle(mixed)
    out = run(mixed, store, rng)
    clean = run(good, None)
    for flow in good:
        if out.calls.get(flow.flow_id, []) != clean.calls.get(flow.flow_id, []):
            out.findings.append(Finding("good_calls", "a good flow's calls changed", flow))
    return out


def check_alone(flow: Placed, store: Store | None) -> list[Finding]:
    return run([flow], store).findings


def minimize(finding: Finding, store: Store | None, budget: int = 400) -> Finding:
    """A smaller flow with the same signature: chunks dropped, then chunks cut shorter."""
    assert finding.flow is not None
    flow, want, tries = finding.flow, finding.signature, 0

    def same(candidate: Placed) -> Finding | None:
        nonlocal tries
        tries += 1
        return next((f for f in check_alone(candidate, store) if f.signature == want), None)

    if same(flow) is None:  # only fails among others: keep it whole
        return finding
    best = finding
    for _pass in range(2):
        i = 0
        while i < len(flow.transcript.chunks) and tries < budget:
            chunks = flow.transcript.chunks
            cand = replace(
                flow, transcript=replace(flow.transcript, chunks=chunks[:i] + chunks[i + 1 :])
            )
            if cand.transcript.chunks and (hit := same(cand)):
                flow, best = cand, replace(hit, flow=cand)
            else:
                i += 1
        for i in range(len(flow.transcript.chunks)):
            side, data = flow.transcript.chunks[i]
            while len(data) > 1 and tries < budget:
                chunks = list(flow.transcript.chunks)
                chunks[i] = (side, data[: len(data) // 2])
                cand = replace(flow, transcript=replace(flow.transcript, chunks=tuple(chunks)))
                if not (hit := same(cand)):
                    break
                flow, best, data = cand, replace(hit, flow=cand), chunks[i][1]
    return best


def pin(finding: Finding, directory: Path = FINDINGS_DIR) -> Path:
    """Save a finding's flow as a reproducer `<protocol>/<hash>.json`."""
    assert finding.flow is not None
    flow = finding.flow
    body = {
        "stage": finding.stage,
        "error": finding.error,
        "server_port": flow.server_port,
        "noise": flow.noise,
        "transcript": json.loads(flow.transcript.to_json()),
    }
    text = json.dumps(body, indent=1) + "\n"
    digest = hashlib.blake2b(flow.transcript.to_json().encode(), digest_size=6).hexdigest()
    path = directory / protocol_of(flow.transcript) / f"{digest}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def load_pinned(path: Path) -> tuple[dict, Placed]:
    body = json.loads(path.read_text())
    t = Transcript.from_json(json.dumps(body["transcript"]))
    return body, Placed(t, 40_000, body["server_port"], TS0, noise=body.get("noise", 0))


def pinned_cases(directory: Path = FINDINGS_DIR) -> list[Path]:
    return sorted(directory.glob("*/*.json"))


def unique(findings: Iterable[Finding]) -> list[Finding]:
    seen: dict[str, Finding] = {}
    for f in findings:
        seen.setdefault(f.signature, f)
    return list(seen.values())


@dataclass(frozen=True, slots=True)
class Flood:
    held: int  # bytes the pipeline still holds once the flood is in
    peak: int  # the most it held meanwhile
    failures: int  # DissectFailed events the flood caused
    steps: int  # Python function calls it took: work that grows per message seen in junk


def flood(t: Transcript, fill: bytes, size: int, chunks: int = 1) -> Flood:
    """`size` bytes of `fill` sent by the client after the first `chunks` chunks of `t`
    (a message cut short, then an endless or absurd one), measured with tracemalloc and
    a count of the Python calls it took (deterministic, unlike a time)."""
    flow = Placed(replace(t, chunks=t.chunks[:chunks]), 40_000, t.server_port, TS0)
    segs = flow.segments()[:-2]  # no FIN: the flow stays open
    pipe = Pipeline(default_registry(), RedactionPolicy.default())
    for token, seg in enumerate(segs):
        pipe.process(token, [seg])
    last = next(s for s in reversed(segs) if s.src_port == flow.client_port)
    seq = last.seq + len(last.payload) + (1 if last.flags & SYN else 0)
    block = (fill * (65536 // len(fill) + 1))[:65536]
    failures = steps = 0

    def count(frame: object, event: str, arg: object) -> None:
        nonlocal steps
        if event == "call":
            steps += 1

    tracemalloc.start()
    sys.setprofile(count)
    try:
        base = tracemalloc.get_traced_memory()[0]
        for k in range(size // len(block)):
            seg = replace(
                last, ts_ns=last.ts_ns + k + 1, seq=seq & 0xFFFFFFFF, flags=ACK | PSH, payload=block
            )
            failures += len(pipe.process(10_000 + k, [seg]).failures)
            seq += len(block)
        current, peak = tracemalloc.get_traced_memory()
    finally:
        sys.setprofile(None)
        tracemalloc.stop()
    return Flood(current - base, peak - base, failures, steps)
