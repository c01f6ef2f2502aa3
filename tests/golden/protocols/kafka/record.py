"""Record the Kafka golden capture: a real broker (wiretide.broker.LocalBroker, Kafka 3.9)
and real clients (confluent-kafka / librdkafka), captured with tcpdump on loopback.

    /tmp/v/bin/python -m tests.golden.protocols.kafka.record

What the clients do (and the facts they saw, written to basic.facts.json for the test):
create a topic, produce keyed messages with an idempotent producer, consume them in a
group (join, sync, heartbeats, offset commit, leave), ask for the metadata of a topic
that does not exist (an UNKNOWN_TOPIC_OR_PARTITION error), then close everything.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from wiretide.broker import LocalBroker

sys.path.insert(0, str(Path(__file__).resolve().parents[4]))  # the repo, run as a script
from tests.golden.protocols.recording import tcpdump  # noqa: E402

HERE = Path(__file__).resolve().parent
PORT = 21210  # the broker's client port (its controller listens on PORT + 1)
TOPIC = "wiretide-orders"
MISSING = "wiretide-no-such-topic"
GROUP = "wiretide-golden"
MESSAGES = [(b"k1", b"apple"), (b"k2", b"banana"), (b"k1", b"cherry"), (b"k3", b"damson")]


def run_clients(bootstrap: str) -> dict:
    facts: dict = {"topic": TOPIC, "group": GROUP, "missing_topic": MISSING}
    admin = AdminClient({"bootstrap.servers": bootstrap, "client.id": "golden-admin"})
    admin.create_topics([NewTopic(TOPIC, num_partitions=2, replication_factor=1)])[TOPIC].result(
        timeout=30
    )
    facts["created"] = {"name": TOPIC, "partitions": 2}

    delivered: list[dict] = []

    def on_delivery(err, msg) -> None:
        if err is None:
            delivered.append(
                {"key": msg.key().decode(), "partition": msg.partition(), "offset": msg.offset()}
            )

    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "client.id": "golden-producer",
            "enable.idempotence": True,
            "linger.ms": 0,
        }
    )
    for key, value in MESSAGES:
        producer.produce(TOPIC, value=value, key=key, on_delivery=on_delivery)
        producer.flush(10)  # one Produce request per message
    facts["produced"] = delivered
    producer = None

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "client.id": "golden-consumer",
            "group.id": GROUP,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "heartbeat.interval.ms": 300,
            "session.timeout.ms": 6000,
        }
    )
    consumer.subscribe([TOPIC])
    consumed: list[dict] = []
    deadline = time.monotonic() + 30
    while len(consumed) < len(MESSAGES) and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and msg.error() is None:
            consumed.append(
                {"key": msg.key().decode(), "partition": msg.partition(), "offset": msg.offset()}
            )
    committed = consumer.commit(asynchronous=False)
    facts["consumed"] = consumed
    facts["committed"] = sorted(
        [{"partition": tp.partition, "offset": tp.offset} for tp in committed or []],
        key=lambda c: c["partition"],
    )
    end = time.monotonic() + 1.0  # a few heartbeats and empty fetches
    while time.monotonic() < end:
        consumer.poll(0.2)
    consumer.close()

    try:
        md = admin.list_topics(topic=MISSING, timeout=10)
        err = md.topics[MISSING].error
        facts["missing_error"] = err.name() if err is not None else None
    except KafkaException as e:
        facts["missing_error"] = e.args[0].name()
    admin = None
    return facts


def main() -> None:
    if shutil.which("tcpdump") is None:
        raise SystemExit("tcpdump is not installed (apt-get install tcpdump)")
    pcap = HERE / "basic.pcap"
    with tempfile.TemporaryDirectory(prefix="wiretide-kafka-golden-") as tmp:
        broker = LocalBroker(home=Path(tmp), port=PORT)
        bootstrap = broker.start()
        try:
            with tcpdump(pcap, f"tcp port {PORT}"):
                facts = run_clients(bootstrap)
        finally:
            broker.stop()
    (HERE / "basic.facts.json").write_text(json.dumps(facts, indent=2) + "\n")
    print(f"wrote {pcap} ({pcap.stat().st_size} bytes) and basic.facts.json")


if __name__ == "__main__":
    main()
