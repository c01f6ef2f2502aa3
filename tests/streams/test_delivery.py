"""Restarting a partition from its checkpoint (after a crash or when it moves to another
worker) re-emits only calls already emitted, under the same ids and with the same
contents, and loses none: never a `no_request` half of a call that straddled the cut."""

from __future__ import annotations

import random

import pytest

from schemas.records import ACK, FIN, PSH, SYN, ApiCall, Segment
from streams.dissect.registry import default_registry
from streams.pipeline import Checkpoint, Pipeline
from streams.redact import RedactionPolicy

SERVER = ("10.0.0.2", 8080)


def _pipeline() -> Pipeline:
    return Pipeline(default_registry(), RedactionPolicy.default())


def _seg(src, dst, seq, payload=b"", flags=ACK | PSH, ts=0, ack=0) -> Segment:
    return Segment(ts, src[0], src[1], dst[0], dst[1], seq, ack, flags, payload)


def _request(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()


def _response(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


def test_a_cut_inside_a_call_is_skipped_on_replay_not_emitted_half():
    f, g = ("10.0.0.1", 40001), ("10.0.0.1", 40002)
    messages = [
        [_seg(f, SERVER, 1000, _request("/f"), ts=10)],  # 0: f asks
        [_seg(g, SERVER, 5000, _request("/g"), ts=20)],  # 1: g asks
        [_seg(SERVER, f, 9000, _response(b"f!"), ts=30)],  # 2: f answered
        [_seg(SERVER, g, 7000, _response(b"g!"), ts=40)],  # 3: g answered
    ]
    first = _pipeline()
    emitted = [c for token in range(3) for c in first.process(token, messages[token]).calls]
    assert [c.path for c in emitted] == ["/f"]
    cut = first.checkpoint(3)
    assert cut.token == 1  # g is still open: replay from its request
    assert set(cut.resume) == {emitted[0].flow_id}  # f's call straddles the cut

    # Without the checkpoint's positions a replay would emit f's response on its own.
    naive = _pipeline()
    naive_calls = [c for t in (1, 2, 3) for c in naive.process(t, messages[t]).calls]
    assert "no_request" in {flag for c in naive_calls for flag in c.flags}

    replay = _pipeline()
    replay.resume(cut)
    replayed = [c for t in (1, 2, 3) for c in replay.process(t, messages[t]).calls]
    assert [(c.path, c.flags) for c in replayed] == [("/g", ())]
    assert replay.checkpoint(4).token == 4


def _keep_alive_capture(rng: random.Random, flows: int) -> list[Segment]:
    """Interleaved HTTP/1.1 keep-alive flows; messages split at random over segments."""
    scripts: list[list[tuple]] = []
    for i in range(flows):
        client = ("10.0.0.1", 40000 + i)
        cseq, sseq = rng.randrange(1 << 32), rng.randrange(1 << 32)
        script = [
            (client, SERVER, cseq, b"", SYN, 0),
            (SERVER, client, sseq, b"", SYN | ACK, cseq + 1),
        ]
        cseq, sseq = cseq + 1, sseq + 1
        for j in range(rng.randint(3, 12)):
            for src, dst, data in (
                (client, SERVER, _request(f"/flow{i}/call{j}")),
                (SERVER, client, _response(rng.randbytes(rng.randint(0, 300)).hex().encode())),
            ):
                least = data.index(b"\r\n") + 2  # a whole first line: the protocol is known
                while data:
                    n = rng.randint(min(least, len(data)), len(data))
                    least = 1
                    seq = cseq if src == client else sseq
                    script.append((src, dst, seq & 0xFFFFFFFF, data[:n], ACK | PSH, 0))
                    if src == client:
                        cseq += n
                    else:
                        sseq += n
                    data = data[n:]
        if rng.random() < 0.5:
            script.append((client, SERVER, cseq & 0xFFFFFFFF, b"", FIN | ACK, 0))
            script.append((SERVER, client, sseq & 0xFFFFFFFF, b"", FIN | ACK, 0))
        scripts.append(script)
    segments, ts = [], 1_000_000
    while any(scripts):
        script = rng.choice([s for s in scripts if s])
        src, dst, seq, data, flags, ack = script.pop(0)
        ts += rng.randint(1, 1000)
        segments.append(_seg(src, dst, seq, data, flags, ts, ack & 0xFFFFFFFF))
    return segments


def _messages(rng: random.Random, segments: list[Segment]) -> list[list[Segment]]:
    out, i = [], 0
    while i < len(segments):
        n = rng.randint(1, 6)
        out.append(segments[i : i + n])
        i += n
    return out


def _run(pipe: Pipeline, messages, start: int, stop: int, rng, checkpoints: bool):
    """Process messages[start:stop]; returns the calls and the last checkpoint taken."""
    calls: list[ApiCall] = []
    taken = None
    for token in range(start, stop):
        calls += pipe.process(token, messages[token]).calls
        if checkpoints and rng.random() < 0.3:
            taken = pipe.checkpoint(token + 1)
    return calls, taken


@pytest.mark.parametrize("seed", range(40))
def test_crashes_at_random_moments_lose_duplicate_and_invent_nothing(seed: int) -> None:
    rng = random.Random(seed)
    messages = _messages(rng, _keep_alive_capture(rng, flows=rng.randint(2, 10)))
    clean_pipe = _pipeline()
    clean, _ = _run(clean_pipe, messages, 0, len(messages), rng, checkpoints=False)
    clean += clean_pipe.finish().calls
    by_id = {c.call_id: c for c in clean}
    assert len(by_id) == len(clean) and all(not c.flags for c in clean)

    # Crash several times; each owner starts from the last checkpoint committed.
    emitted: list[ApiCall] = []
    committed = Checkpoint(0, {})
    for _ in range(rng.randint(1, 4)):
        pipe = _pipeline()
        pipe.resume(committed)
        crash_at = rng.randint(committed.token, len(messages))
        calls, taken = _run(pipe, messages, committed.token, crash_at, rng, checkpoints=True)
        emitted += calls
        committed = taken or committed
    pipe = _pipeline()
    pipe.resume(committed)
    calls, _ = _run(pipe, messages, committed.token, len(messages), rng, checkpoints=True)
    emitted += calls + pipe.finish().calls

    invented = [(c.path, c.flags) for c in emitted if c.call_id not in by_id]
    assert invented == []
    assert {c.call_id for c in emitted} == set(by_id)
    assert all(c == by_id[c.call_id] for c in emitted)  # a replayed call is the same call


def test_a_checkpoint_travels_in_commit_metadata_and_back():
    from schemas.runtime.topics import KAFKA_DEFAULT_METADATA_MAX
    from streams.app import METADATA_MARGIN, decode_checkpoint, encode_checkpoint

    rng = random.Random(3)
    resume = {
        f"tcp:10.0.0.{i}:{40000 + i}-10.0.0.2:8080": {"lo": rng.randrange(1 << 32), "hi": i}
        for i in range(100)
    }
    resume["tls:10.0.0.9:1-10.0.0.2:443"] = {"hi": 7}  # one direction only
    cp = Checkpoint(1234, resume)
    metadata = encode_checkpoint(cp)
    # a hundred open flows fit Kafka's default 4 KiB
    assert len(metadata) <= KAFKA_DEFAULT_METADATA_MAX - METADATA_MARGIN
    assert decode_checkpoint(1234, metadata) == cp
    assert decode_checkpoint(7, encode_checkpoint(Checkpoint(7, {}))) == Checkpoint(7, {})
    assert decode_checkpoint(7, None) == Checkpoint(7, {})  # a commit made without one


def _dns(txid: int, name: str, answer: bool) -> bytes:
    qname = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    flags = 0x8180 if answer else 0x0100
    header = txid.to_bytes(2, "big") + flags.to_bytes(2, "big") + b"\0\1\0\0\0\0\0\0"
    return header + qname + b"\0\1\0\1"


def test_a_dns_call_has_the_same_id_whichever_datagram_a_replay_starts_at():
    client, resolver = ("10.0.0.1", 53001), ("10.0.0.53", 53)

    def datagram(src, dst, payload, ts):
        return Segment(ts, *src, *dst, 0, 0, 0, payload, transport="udp")

    messages = []
    for i, name in enumerate(["a.example", "b.example", "c.example"]):
        messages.append([datagram(client, resolver, _dns(i, name, False), ts=100 * i + 1)])
        messages.append([datagram(resolver, client, _dns(i, name, True), ts=100 * i + 2)])

    def ids(pipeline: Pipeline, tokens) -> dict[str, str]:
        calls = [c for t in tokens for c in pipeline.process(t, messages[t]).calls]
        calls += pipeline.finish().calls
        assert all(c.protocol == "dns" for c in calls)
        return {c.path: c.call_id for c in calls}

    whole = ids(_pipeline(), range(6))
    assert len(whole) == 3
    replay = ids(_pipeline(), range(2, 6))  # read again from the second query on
    assert replay == {name: whole[name] for name in list(whole)[1:]}
