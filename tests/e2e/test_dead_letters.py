"""Messages that are not records of their topic's schema go to `<topic>.dlq` with the
reason, and the good records around them are still stored."""

from __future__ import annotations

from confluent_kafka import Consumer, Producer

from tests.conftest import GOLDEN, run_wiretide

PCAP = GOLDEN / "e2e" / "http_basic.pcap"


def _dlq(bootstrap: str, topic: str) -> list:
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "dlq-reader", "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([topic])
    got = []
    for _ in range(20):
        msg = consumer.poll(1)
        if msg is not None and not msg.error():
            got.append(msg)
        elif got:
            break
    consumer.close()
    return got


def test_undecodable_messages_go_to_dead_letter_topics(wt_env: dict[str, str]) -> None:
    bootstrap, prefix = wt_env["WIRETIDE_KAFKA"], wt_env["WIRETIDE_PREFIX"]
    assert "stored 17 calls" in run_wiretide(["tap", "--pcap", str(PCAP)], wt_env).stdout
    producer = Producer({"bootstrap.servers": bootstrap})
    producer.produce(f"{prefix}wiretide.segments", key=b"junk", value=b"not avro at all")
    producer.produce(f"{prefix}wiretide.calls", key=b"junk", value=b"\xc3\x01garbage!")
    assert producer.flush(30) == 0

    out = run_wiretide(["tap", "--pcap", str(PCAP)], wt_env).stdout
    assert "stored 0 calls" in out and "17 calls were already stored" in out

    seg_dlq = _dlq(bootstrap, f"{prefix}wiretide.segments.dlq")
    assert [m.value() for m in seg_dlq] == [b"not avro at all"]
    assert b"Avro" in dict(seg_dlq[0].headers())["reason"]
    call_dlq = _dlq(bootstrap, f"{prefix}wiretide.calls.dlq")
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
