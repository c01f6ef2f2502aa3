"""Seed corpus for the fuzzer: every flow of the real golden captures as a transcript
(who sent which bytes, in capture order), and the segments that replay a transcript as
one fresh connection."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from producers.pcap import read_segments
from schemas.records import ACK, FIN, PSH, SYN, Segment

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden"
SEED_CAPTURES = sorted(
    [*(GOLDEN / "protocols").glob("*/*.pcap"), GOLDEN / "e2e" / "http_basic.pcap"]
)
CLIENT, SERVER = "c", "s"
SERVER_IP = "10.9.0.1"  # where every replayed connection goes


@dataclass(frozen=True, slots=True)
class Transcript:
    """One connection (or UDP conversation) as the bytes each side sent, in order."""

    name: str  # where it came from, e.g. "redis/basic.pcap#3"
    transport: str  # tcp | udp
    server_port: int
    chunks: tuple[tuple[str, bytes], ...]  # (CLIENT | SERVER, payload)

    def to_json(self) -> str:
        return json.dumps(
            {
                "name": self.name,
                "transport": self.transport,
                "server_port": self.server_port,
                "chunks": [[side, data.hex()] for side, data in self.chunks],
            },
            indent=1,
        )

    @staticmethod
    def from_json(text: str) -> Transcript:
        d = json.loads(text)
        chunks = tuple((side, bytes.fromhex(data)) for side, data in d["chunks"])
        return Transcript(d["name"], d["transport"], d["server_port"], chunks)


def _transcripts_of(path: Path) -> list[Transcript]:
    conns: dict[frozenset, dict] = {}
    for seg in read_segments(path):
        a, b = (seg.src_ip, seg.src_port), (seg.dst_ip, seg.dst_port)
        conn = conns.setdefault(
            frozenset((a, b)), {"transport": seg.transport, "chunks": [], "next": {}}
        )
        if "client" not in conn and (seg.transport == "udp" or seg.flags & SYN):
            syn_ack = seg.flags & SYN and seg.flags & ACK
            conn["client"] = b if syn_ack else a
        if not seg.payload:
            continue
        if seg.transport == "tcp":  # drop retransmissions: bytes already seen
            end = seg.seq + len(seg.payload)
            if conn["next"].get(a, seg.seq) > seg.seq:
                continue
            conn["next"][a] = end
        conn["chunks"].append((a, seg.payload))
    out = []
    for i, conn in enumerate(conns.values()):
        if not conn["chunks"]:
            continue
        ends = {end for end, _ in conn["chunks"]}
        client = conn.get("client") or max(ends, key=lambda e: e[1])  # ephemeral port
        server = next((e for e in ends if e != client), None)
        if server is None:  # one side only: the server is the lower port
            server = client if client[1] < 1024 else (client[0], 0)
        chunks = tuple((CLIENT if end == client else SERVER, data) for end, data in conn["chunks"])
        name = f"{path.parent.name}/{path.name}#{i}"
        out.append(Transcript(name, conn["transport"], server[1], chunks))
    return out


@cache
def seed_corpus() -> tuple[Transcript, ...]:
    return tuple(t for path in SEED_CAPTURES for t in _transcripts_of(path))


def replay(
    t: Transcript, client_ip: str, client_port: int, server_port: int, ts0: int, step: int = 1000
) -> list[Segment]:
    """Segments of `t` as one new connection from `client_ip:client_port` to
    SERVER_IP:`server_port` starting at `ts0` (a SYN, the chunks, both FINs)."""
    ends = {CLIENT: (client_ip, client_port), SERVER: (SERVER_IP, server_port)}
    other = {CLIENT: SERVER, SERVER: CLIENT}
    ts = ts0
    if t.transport == "udp":
        segs = []
        for side, data in t.chunks:
            ts += step
            segs.append(
                Segment(ts, *ends[side], *ends[other[side]], 0, 0, 0, data, transport="udp")
            )
        return segs
    seq = {CLIENT: 1000, SERVER: 50_000}

    def seg(side: str, flags: int, data: bytes = b"") -> Segment:
        nonlocal ts
        ts += step
        s = Segment(ts, *ends[side], *ends[other[side]], seq[side], seq[other[side]], flags, data)
        seq[side] += len(data) + (1 if flags & (SYN | FIN) else 0)
        return s

    segs = [seg(CLIENT, SYN), seg(SERVER, SYN | ACK)]
    segs += [seg(side, ACK | PSH, data) for side, data in t.chunks]
    segs += [seg(CLIENT, FIN | ACK), seg(SERVER, FIN | ACK)]
    return segs
