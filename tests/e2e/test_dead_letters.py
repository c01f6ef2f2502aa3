"""Messages that are not records of their topic's schema go to `<topic>.dlq` with the
reason, and the good records around them are still stored."""

from __future__ import annotations

import json
import struct

from confluent_kafka import Producer

from producers.pcap_writer import PcapWriter
from schemas.records import ACK, FIN, PSH, SYN, Segment
from tests.conftest import GOLDEN, read_topic, run_wiretide

PCAP = GOLDEN / "e2e" / "http_basic.pcap"


def test_undecodable_messages_go_to_dead_letter_topics(wt_env: dict[str, str]) -> None:
    bootstrap, prefix = wt_env["WIRETIDE_KAFKA"], wt_env["WIRETIDE_PREFIX"]
    assert "stored 17 calls" in run_wiretide(["tap", "--pcap", str(PCAP)], wt_env).stdout
    producer = Producer({"bootstrap.servers": bootstrap})
    producer.produce(f"{prefix}wiretide.segments", key=b"junk", value=b"not avro at all")
    producer.produce(f"{prefix}wiretide.calls", key=b"junk", value=b"\xc3\x01garbage!")
    assert producer.flush(30) == 0

    out = run_wiretide(["tap", "--pcap", str(PCAP)], wt_env).stdout
    assert "stored 0 calls" in out and "17 calls were already stored" in out

    seg_dlq = read_topic(bootstrap, f"{prefix}wiretide.segments.dlq")
    assert [m.value() for m in seg_dlq] == [b"not avro at all"]
    assert b"Avro" in dict(seg_dlq[0].headers())["reason"]
    call_dlq = read_topic(bootstrap, f"{prefix}wiretide.calls.dlq")
    assert [m.value() for m in call_dlq] == [b"\xc3\x01garbage!"]
    assert dict(call_dlq[0].headers())["reason"]


def test_commands_start_the_local_broker_by_themselves(tmp_path, kafka: str) -> None:
    """No --kafka and no WIRETIDE_KAFKA: tap starts a local broker, which keeps running
    for the next command until `wiretide broker stop`."""
    import os

    from tests.conftest import _free_port_pair

    env = {k: v for k, v in os.environ.items() if k != "WIRETIDE_KAFKA"}
    env.update(WIRETIDE_DATA=str(tmp_path / "data"), WIRETIDE_KAFKA_PORT=str(_free_port_pair()))
    try:
        assert "stored 17 calls" in run_wiretide(["tap", "--pcap", str(PCAP)], env).stdout
        status = run_wiretide(["broker", "status"], env)
        assert "up at 127.0.0.1:" + env["WIRETIDE_KAFKA_PORT"] in status.stdout
        assert len(run_wiretide(["query"], env).stdout.splitlines()) == 17
    finally:
        run_wiretide(["broker", "stop"], env, check=False)


def _tcp_dialog(client_port: int, server_port: int, steps: list, t0: int) -> list[Segment]:
    """A whole TCP connection (handshake, the (from_client, bytes) steps, FINs) as segments."""
    cli, srv = ("10.0.0.1", client_port), ("10.0.0.2", server_port)
    seq = {True: 1000, False: 5000}
    out: list[Segment] = []

    def seg(from_client: bool, flags: int, payload: bytes = b"") -> None:
        (a, ap), (b, bp) = (cli, srv) if from_client else (srv, cli)
        ts = t0 + 1_000_000 * len(out)
        out.append(
            Segment(ts, a, ap, b, bp, seq[from_client], seq[not from_client], flags, payload)
        )
        seq[from_client] += len(payload) + (1 if flags & (SYN | FIN) else 0)

    seg(True, SYN)
    seg(False, SYN | ACK)
    seg(True, ACK)
    for from_client, data in steps:
        seg(from_client, PSH | ACK, data)
    seg(True, FIN | ACK)
    seg(False, FIN | ACK)
    seg(True, ACK)
    return out


def test_numbers_no_column_holds_neither_stop_the_pipeline_nor_lose_a_call(wt_env, tmp_path):
    """Issue 11: a Kafka error code of -1 (UNKNOWN_SERVER_ERROR) used to make the sink exit
    on every retry, and an AMQP body size of 2^63 the worker; now both are stored, the
    -1 as it is and the size clamped and flagged, beside an ordinary HTTP call."""
    from tests.streams.test_amqp import frame, method, shortstr
    from tests.streams.test_kafka_dissect import batch, produce_v3, produce_v3_response

    amqp_args = b"\x00\x00" + shortstr("ex") + shortstr("key") + b"\x00"
    amqp_header = frame(2, 1, struct.pack(">HHQ", 60, 0, 1 << 63) + b"\x00\x00")
    t0 = 1_700_000_000 * 10**9
    segments = (
        _tcp_dialog(40001, 9092, [(True, produce_v3(1, 1, batch(1))),
                                  (False, produce_v3_response(1, error=-1))], t0)
        + _tcp_dialog(40002, 5672, [(True, b"AMQP\x00\x00\x09\x01"),
                                    (True, method(1, 60, 40, amqp_args) + amqp_header
                                     + frame(3, 1, b"hello"))], t0 + 10**9)
        + _tcp_dialog(40003, 80, [(True, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
                                  (False, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")],
                      t0 + 2 * 10**9)
    )  # fmt: skip
    pcap = tmp_path / "edge.pcap"
    writer = PcapWriter()
    pcap.write_bytes(writer.header() + b"".join(writer.packets(s) for s in segments))

    assert "stored 3 calls" in run_wiretide(["tap", "--pcap", str(pcap)], wt_env).stdout
    calls = {
        c["protocol"]: c
        for c in map(json.loads, run_wiretide(["query", "--json"], wt_env).stdout.splitlines())
    }
    assert calls["kafka"]["response"]["status"] == -1
    assert calls["kafka"]["response"]["reason"] == "UNKNOWN_SERVER_ERROR"
    assert calls["amqp"]["request"]["body_size"] == (1 << 63) - 1
    assert "request_body_size_clamped" in calls["amqp"]["flags"]
    assert calls["http"]["response"]["status"] == 200
    kfl = run_wiretide(["query", "--json", "response.status == -1"], wt_env).stdout
    assert [json.loads(line)["protocol"] for line in kfl.splitlines()] == ["kafka"]
