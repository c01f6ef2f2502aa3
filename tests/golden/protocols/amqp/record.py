"""Record the AMQP 0-9-1 golden capture: a real RabbitMQ broker and the real pika client
on loopback, captured with tcpdump.

    sudo /tmp/v/bin/python tests/golden/protocols/amqp/record.py [basic] [extras]

Starts `rabbitmq-server` (Debian package) by hand on 127.0.0.1:21400 with its data, logs
and Erlang ports (21401 distribution, 21402 epmd) under a temp dir, records
`tcp port 21400` on `lo` into `<case>.pcap` for each case (`basic`: `client_session`,
`extras`: `extras_session`, both with pika) and saves what the client sent and got back
in `<case>.facts.json` (the test checks the dissected calls against it), then stops
tcpdump and the broker. Then regenerate the expected calls for each case:

    /tmp/v/bin/python -m tests.golden.protocols.dissect \
        tests/golden/protocols/amqp/<case>.pcap --write
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[4]))  # the repo, run as a script
from tests.golden.protocols.recording import tcpdump, wait_port  # noqa: E402

HERE = Path(__file__).resolve().parent
PORT, DIST_PORT, EPMD_PORT = 21400, 21401, 21402
RABBIT = "/usr/lib/rabbitmq/bin/rabbitmq-server"
EXCHANGE, QUEUE, ROUTING_KEY = "wt.orders", "wt.orders.q", "order.created"
MISSING_QUEUE, MISSING_EXCHANGE = "wt.no-such-queue", "wt.no-such-exchange"
SOURCE_EXCHANGE, TOPIC_EXCHANGE = "wt.fanout", "wt.topic"


def start_broker(base: Path) -> subprocess.Popen:
    (base / "plugins").write_text("")
    (base / "env.conf").write_text("")
    env = dict(
        os.environ,
        HOME=str(base),
        RABBITMQ_NODE_PORT=str(PORT),
        RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
        RABBITMQ_DIST_PORT=str(DIST_PORT),
        ERL_EPMD_PORT=str(EPMD_PORT),
        RABBITMQ_NODENAME="wiretide_amqp@localhost",
        RABBITMQ_MNESIA_BASE=str(base / "mnesia"),
        RABBITMQ_LOG_BASE=str(base / "log"),
        RABBITMQ_ENABLED_PLUGINS_FILE=str(base / "plugins"),
        RABBITMQ_CONFIG_FILE=str(base / "rabbitmq"),
        RABBITMQ_ADVANCED_CONFIG_FILE=str(base / "advanced.config"),
        RABBITMQ_CONF_ENV_FILE=str(base / "env.conf"),
        RABBITMQ_PID_FILE=str(base / "pid"),
    )
    log = open(base / "server.out", "wb")  # noqa: SIM115 - lives as long as the broker
    proc = subprocess.Popen([RABBIT], env=env, stdout=log, stderr=log, start_new_session=True)
    wait_port(PORT, timeout=90)
    return proc


def stop_broker(proc: subprocess.Popen) -> None:
    """Stop the broker's process group, then the epmd daemon it started on our port."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    epmd_env = dict(os.environ, ERL_EPMD_PORT=str(EPMD_PORT))
    subprocess.run(["epmd", "-kill"], env=epmd_env, capture_output=True, check=False)


def props_fact(props: Any) -> dict[str, Any]:
    keys = ("content_type", "delivery_mode", "correlation_id", "reply_to", "message_id")
    out = {k: getattr(props, k) for k in keys if getattr(props, k) is not None}
    if props.headers:
        out["headers"] = props.headers
    return out


def client_session() -> dict[str, Any]:
    """Everything the broker is asked, with the answers pika hands back."""
    import pika
    from pika.exceptions import ChannelClosedByBroker

    facts: dict[str, Any] = {"published": [], "delivered": [], "errors": []}
    params = pika.ConnectionParameters(
        "127.0.0.1", PORT, frame_max=4096, heartbeat=0, client_properties={"product": "wt-rec"}
    )
    conn = pika.BlockingConnection(params)
    ch = conn.channel()
    ch.exchange_declare(EXCHANGE, "direct")
    ok = ch.queue_declare(QUEUE)
    facts["queue_declare_ok"] = {
        "queue": ok.method.queue,
        "message_count": ok.method.message_count,
        "consumer_count": ok.method.consumer_count,
    }
    ch.queue_bind(QUEUE, EXCHANGE, ROUTING_KEY)
    ch.basic_qos(prefetch_count=10)

    def publish(exchange: str, key: str, body: bytes, props: pika.BasicProperties) -> None:
        ch.basic_publish(exchange, key, body, props)
        facts["published"].append(
            {
                "exchange": exchange,
                "routing_key": key,
                "body_size": len(body),
                "body_head": body[:64].decode(),
                **props_fact(props),
            }
        )

    publish(
        EXCHANGE,
        ROUTING_KEY,
        b'{"order": 1, "item": "tea"}',
        pika.BasicProperties(
            content_type="application/json",
            delivery_mode=2,
            correlation_id="corr-1",
            reply_to="wt.replies",
            message_id="msg-1",
            headers={"x-tenant": "acme", "attempt": 1},
        ),
    )
    big = ("lorem ipsum " * 900).encode()  # 10800 bytes: three body frames at frame_max 4096
    publish(EXCHANGE, ROUTING_KEY, big, pika.BasicProperties(content_type="text/plain"))
    publish("", QUEUE, b"via the default exchange", pika.BasicProperties(message_id="msg-3"))

    for method, props, body in ch.consume(QUEUE, inactivity_timeout=5):
        assert method is not None, "a published message was not delivered"
        facts["delivered"].append(
            {
                "consumer_tag": method.consumer_tag,
                "delivery_tag": method.delivery_tag,
                "exchange": method.exchange,
                "routing_key": method.routing_key,
                "body_size": len(body),
                "body_head": body[:64].decode(),
                **props_fact(props),
            }
        )
        ch.basic_ack(method.delivery_tag)
        if len(facts["delivered"]) == 3:
            break
    ch.cancel()

    publish(EXCHANGE, ROUTING_KEY, b"fetch me", pika.BasicProperties(correlation_id="corr-4"))
    for _ in range(20):  # the publish is asynchronous: poll until the broker has routed it
        method, props, body = ch.basic_get(QUEUE)
        if method is not None:
            break
        time.sleep(0.1)
    assert method is not None
    facts["get_ok"] = {"delivery_tag": method.delivery_tag, "body": body.decode()}
    ch.basic_reject(method.delivery_tag, requeue=False)
    method, _, _ = ch.basic_get(QUEUE)
    facts["get_empty"] = method is None

    # Publisher confirms on a second channel: the broker acks (basic.ack from the server).
    confirm = conn.channel()
    confirm.confirm_delivery()
    confirm.basic_publish(EXCHANGE, ROUTING_KEY, b"confirmed", pika.BasicProperties())
    facts["confirmed_channel"] = confirm.channel_number
    confirm.close()

    # Errors: a passive declare of a missing queue, then a publish to a missing exchange.
    try:
        ch.queue_declare(MISSING_QUEUE, passive=True)
    except ChannelClosedByBroker as e:
        facts["errors"].append({"op": "queue.declare", "code": e.reply_code, "text": e.reply_text})
    ch = conn.channel()
    facts["error_channel"] = ch.channel_number
    ch.basic_publish(MISSING_EXCHANGE, "nowhere", b"lost")
    try:
        ch.queue_declare(QUEUE, passive=True)  # the broker closes the channel first
    except ChannelClosedByBroker as e:
        facts["errors"].append({"op": "basic.publish", "code": e.reply_code, "text": e.reply_text})
    ch = conn.channel()
    ch.queue_delete(QUEUE)
    ch.exchange_delete(EXCHANGE)
    ch.close()
    conn.close()
    return facts


def extras_session() -> dict[str, Any]:
    """Less common paths: a mandatory publish the broker returns (with confirms), a
    server-named queue, exchange-to-exchange bindings, a transaction, nack, recover,
    purge, heartbeats, and a connection refused for a missing virtual host."""
    import pika
    from pika.exceptions import AMQPConnectionError, UnroutableError

    facts: dict[str, Any] = {}
    params = pika.ConnectionParameters("127.0.0.1", PORT, heartbeat=1)
    conn = pika.BlockingConnection(params)
    ch = conn.channel()
    ch.confirm_delivery()
    ch.exchange_declare(SOURCE_EXCHANGE, "fanout")
    ch.exchange_declare(TOPIC_EXCHANGE, "topic")
    try:
        ch.basic_publish(TOPIC_EXCHANGE, "no.route", b"returned", mandatory=True)
    except UnroutableError as e:
        returned = e.messages[0]
        facts["returned"] = {
            "reply_code": returned.method.reply_code,
            "reply_text": returned.method.reply_text,
            "exchange": returned.method.exchange,
            "routing_key": returned.method.routing_key,
            "body": returned.body.decode(),
        }
    ok = ch.queue_declare("", exclusive=True)
    queue = facts["server_named_queue"] = ok.method.queue
    ch.exchange_bind(TOPIC_EXCHANGE, SOURCE_EXCHANGE)
    ch.queue_bind(queue, TOPIC_EXCHANGE, "#")

    tx = conn.channel()
    tx.tx_select()
    tx.basic_publish(SOURCE_EXCHANGE, "", b"in a transaction")
    tx.basic_publish(SOURCE_EXCHANGE, "", b"second in the transaction")
    tx.tx_commit()
    facts["tx_channel"] = tx.channel_number

    method, _, body = ch.basic_get(queue)
    facts["get_ok"] = {"delivery_tag": method.delivery_tag, "body": body.decode()}
    ch.basic_nack(method.delivery_tag, requeue=False)
    ch.basic_recover(requeue=True)
    conn.sleep(2.5)  # heartbeats both ways (heartbeat=1)
    purged = ch.queue_purge(queue)
    facts["purged"] = purged.method.message_count
    conn.close()

    try:
        pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", PORT, "wt-no-such-vhost"))
    except AMQPConnectionError as e:
        cause = e.args[0] if e.args else e
        facts["refused"] = {"type": type(e).__name__, "detail": str(cause)}
    return facts


CASES = {"basic": client_session, "extras": extras_session}


def main() -> None:
    if shutil.which("tcpdump") is None or not Path(RABBIT).exists():
        raise SystemExit("needs tcpdump and rabbitmq-server (apt-get install rabbitmq-server)")
    names = sys.argv[1:] or list(CASES)
    unknown = [n for n in names if n not in CASES]
    if unknown:
        raise SystemExit(f"unknown case {unknown[0]!r}; cases: {', '.join(CASES)}")
    with tempfile.TemporaryDirectory(prefix="wt-amqp-") as tmp:
        broker = start_broker(Path(tmp))
        try:
            for name in names:
                pcap, facts_path = HERE / f"{name}.pcap", HERE / f"{name}.facts.json"
                with tcpdump(pcap, f"tcp port {PORT}"):
                    facts = CASES[name]()
                facts_path.write_text(json.dumps(facts, indent=2) + "\n")
                print(f"wrote {pcap} ({pcap.stat().st_size} bytes) and {facts_path}")
        finally:
            stop_broker(broker)


if __name__ == "__main__":
    main()
