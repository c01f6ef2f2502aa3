"""Mutations of a transcript: what a hostile or broken peer sends. Each takes a seeded
`random.Random`, so a run is a pure function of its seed."""

from __future__ import annotations

import random
import struct
from collections.abc import Callable, Sequence
from dataclasses import replace

from schemas.records import FIN, RST, SYN, Segment
from tests.fuzz.corpus import CLIENT, SERVER, Transcript

MAX_TRANSCRIPT = 512 * 1024  # bytes of one mutated flow (deep nesting and repeats grow it)

Mutator = Callable[[random.Random, Transcript, Sequence[Transcript]], Transcript]

BOUNDARY_INTS = (0, 1, -1, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF, 2**31 - 1, 2**31,
                 2**32 - 1, 2**63 - 1, 2**63, 2**64 - 1)  # fmt: skip
INVALID_UTF8 = (b"\xff", b"\xfe\xff", b"\xc3\x28", b"\xe2\x28\xa1", b"\xf0\x28\x8c\x28",
                b"\xed\xa0\x80", b"\xc0\xaf", b"\xf8\x88\x80\x80\x80", b"\x00")  # fmt: skip
NESTING = (b"[", b'{"a":', b"*1\r\n", b"\x03a\x00", b"{", b"(", b"\x0f\x00\x00\x00\x01")


def _pick(rng: random.Random, t: Transcript) -> int:
    return rng.randrange(len(t.chunks))


def _with_chunk(t: Transcript, i: int, data: bytes) -> Transcript:
    chunks = list(t.chunks)
    chunks[i] = (chunks[i][0], data)
    return replace(t, chunks=tuple(chunks))


def bit_flip(rng: random.Random, t: Transcript, _: Sequence[Transcript]) -> Transcript:
    i = _pick(rng, t)
    data = bytearray(t.chunks[i][1])
    for _n in range(rng.randint(1, 8)):
        if data:
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    return _with_chunk(t, i, bytes(data))


def truncate(rng: random.Random, t: Transcript, _: Sequence[Transcript]) -> Transcript:
    i = _pick(rng, t)
    data = t.chunks[i][1]
    t = _with_chunk(t, i, data[: rng.randrange(len(data) + 1)])
    if rng.random() < 0.5:  # the connection dies there
        t = replace(t, chunks=t.chunks[: i + 1])
    return t


def splice(rng: random.Random, t: Transcript, corpus: Sequence[Transcript]) -> Transcript:
    """The head of one message glued to the tail of another (any protocol's)."""
    other = rng.choice(corpus)
    donor = other.chunks[_pick(rng, other)][1]
    i = _pick(rng, t)
    data = t.chunks[i][1]
    cut = rng.randrange(len(data) + 1)
    return _with_chunk(t, i, data[:cut] + donor[rng.randrange(len(donor) + 1) :])


def huge_length(rng: random.Random, t: Transcript, _: Sequence[Transcript]) -> Transcript:
    """A boundary integer written over what is likely a length or count field."""
    i = _pick(rng, t)
    data = bytearray(t.chunks[i][1])
    width = rng.choice((1, 2, 4, 8))
    value = rng.choice(BOUNDARY_INTS) % (1 << (8 * width))
    field = value.to_bytes(width, rng.choice(("big", "little")))
    head = min(len(data), 24)  # length prefixes live near a message start
    at = rng.randrange(head + 1) if rng.random() < 0.7 else rng.randrange(len(data) + 1)
    data[at : at + width] = field
    if rng.random() < 0.3:  # as text too, for text protocols ($-1, Content-Length...)
        data[at:at] = str(rng.choice(BOUNDARY_INTS)).encode()
    return _with_chunk(t, i, bytes(data))


def invalid_utf8(rng: random.Random, t: Transcript, _: Sequence[Transcript]) -> Transcript:
    i = _pick(rng, t)
    data = bytearray(t.chunks[i][1])
    for _n in range(rng.randint(1, 4)):
        at = rng.randrange(len(data) + 1)
        data[at:at] = rng.choice(INVALID_UTF8)
    return _with_chunk(t, i, bytes(data))


def deep_nesting(rng: random.Random, t: Transcript, _: Sequence[Transcript]) -> Transcript:
    i = _pick(rng, t)
    data = t.chunks[i][1]
    at = rng.randrange(len(data) + 1)
    depth = rng.choice((64, 1000, 20_000))
    return _with_chunk(t, i, data[:at] + rng.choice(NESTING) * depth + data[at:])


def repeat(rng: random.Random, t: Transcript, _: Sequence[Transcript]) -> Transcript:
    i = _pick(rng, t)
    chunks = list(t.chunks)
    chunks[i + 1 : i + 1] = [chunks[i]] * rng.choice((2, 16, 200))
    return replace(t, chunks=tuple(chunks))


def reorder(rng: random.Random, t: Transcript, _: Sequence[Transcript]) -> Transcript:
    """A chunk dropped, swapped with its neighbour, or sent by the other side."""
    chunks = list(t.chunks)
    i = _pick(rng, t)
    how = rng.randrange(3)
    if how == 0 and len(chunks) > 1:
        del chunks[i]
    elif how == 1 and i + 1 < len(chunks):
        chunks[i], chunks[i + 1] = chunks[i + 1], chunks[i]
    else:
        side, data = chunks[i]
        chunks[i] = (SERVER if side == CLIENT else CLIENT, data)
    return replace(t, chunks=tuple(chunks))


def resegment(rng: random.Random, t: Transcript, _: Sequence[Transcript]) -> Transcript:
    """The same bytes in other segment sizes (1 byte up to a whole message)."""
    if t.transport == "udp":
        return t
    size = rng.choice((1, 3, 7, 64))
    chunks = []
    for side, data in t.chunks:
        chunks += [(side, data[k : k + size]) for k in range(0, len(data), size)]
    return replace(t, chunks=tuple(chunks))


def junk(rng: random.Random, t: Transcript, _: Sequence[Transcript]) -> Transcript:
    chunks = list(t.chunks)
    n = rng.choice((1, 4, 64, 4096))
    chunks.insert(rng.randrange(len(chunks) + 1), (rng.choice((CLIENT, SERVER)), rng.randbytes(n)))
    return replace(t, chunks=tuple(chunks))


def int_fields(rng: random.Random, t: Transcript, _: Sequence[Transcript]) -> Transcript:
    """Every aligned 4-byte word of a chunk's head set to one boundary value."""
    i = _pick(rng, t)
    data = bytearray(t.chunks[i][1])
    word = struct.pack(rng.choice(("<I", ">I")), rng.choice(BOUNDARY_INTS) % 2**32)
    for at in range(rng.randrange(4), min(len(data), 64) - 3, 4):
        if rng.random() < 0.5:
            data[at : at + 4] = word
    return _with_chunk(t, i, bytes(data))


MUTATORS: tuple[Mutator, ...] = (
    bit_flip,
    truncate,
    splice,
    huge_length,
    invalid_utf8,
    deep_nesting,
    repeat,
    reorder,
    resegment,
    junk,
    int_fields,
)


def mutate(rng: random.Random, seed: Transcript, corpus: Sequence[Transcript]) -> Transcript:
    """`seed` with one to four stacked mutations, its bytes kept under MAX_TRANSCRIPT."""
    t = seed
    for _n in range(rng.choice((1, 1, 2, 3, 4))):
        if not t.chunks:
            break
        t = rng.choice(MUTATORS)(rng, t, corpus)
    chunks, total = [], 0
    for side, data in t.chunks:
        if total >= MAX_TRANSCRIPT:
            break
        data = data[: MAX_TRANSCRIPT - total]
        total += len(data)
        if data:
            chunks.append((side, data))
    return replace(t, chunks=tuple(chunks))


def wire(rng: random.Random, segments: list[Segment]) -> list[Segment]:
    """What the network does to a connection's segments: one lost (a gap), two swapped,
    one retransmitted with other bytes, the handshake missed (mid-stream start), the end
    reset, or sequence numbers about to wrap."""
    segs = list(segments)
    data = [k for k, s in enumerate(segs) if s.payload]
    how = rng.randrange(6)
    if how == 0 and data:
        del segs[rng.choice(data)]
    elif how == 1 and len(segs) > 3:
        k = rng.randrange(len(segs) - 1)
        segs[k], segs[k + 1] = segs[k + 1], segs[k]
    elif how == 2 and data:
        k = rng.choice(data)
        other = bytes(b ^ 0x5A for b in segs[k].payload)
        segs.insert(k + 1, replace(segs[k], payload=other))
    elif how == 3:
        segs = [s for s in segs if not s.flags & SYN]
    elif how == 4 and segs and segs[-1].flags & FIN:
        segs[-1] = replace(segs[-1], flags=RST)
    elif how == 5:
        shift = 0xFFFFFFFF - 40 - (segs[0].seq if segs else 0)
        segs = [replace(s, seq=(s.seq + shift) & 0xFFFFFFFF) for s in segs]
    return segs
