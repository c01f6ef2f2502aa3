"""Where a run's verdicts go: the `wiretide.replay` topic (Avro `ReplayResult`, keyed by
run id) and the store's `replay_results` table.

The table is written here, directly through sinks/clickhouse, not by a sink consuming the
topic: a run's results are few (one per copy sent, produced by this one process), the
report that follows a run must see every one of them at once (no consumer lag to wait
out), and the calls sink's machinery (batching for throughput, dead letters, offsets)
buys nothing at this volume. The topic is for everything else that wants them (other
consumers, a hub elsewhere). Either output is optional: no Kafka, no topic; no store
(an embedded store another process holds), no table.
"""

from __future__ import annotations

from collections.abc import Iterable

from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from schemas.config import Settings
from schemas.errors import WiretideError
from schemas.replay import ReplayResult
from schemas.serde import encode_replay_result
from sinks.clickhouse.connect import Store
from sinks.clickhouse.replay_results import ensure_table, insert_results
from wiretide.replay.model import Exchange, Verdict

BODY_CAP = 64 * 1024  # of a replayed body kept in a result (the recording is capped too)
BATCH = 500  # results per insert
TOPIC = "wiretide.replay"


def result_of(exchange: Exchange, verdict: Verdict) -> ReplayResult:
    resp, req = exchange.response, exchange.request
    return ReplayResult(
        run_id=exchange.run_id,
        copy=exchange.copy,
        sent_ns=exchange.sent_ns,
        outcome=verdict.outcome,
        differences=tuple((d.where, d.recorded, d.replayed) for d in verdict.differences),
        recorded=exchange.recorded,
        request_method=req.method,
        request_url=req.url,
        request_headers=req.headers,
        request_body=req.body[:BODY_CAP],
        answered=resp is not None,
        status=resp.status if resp else 0,
        response_headers=resp.headers if resp else (),
        response_body=resp.body[:BODY_CAP] if resp else b"",
        latency_ns=resp.latency_ns if resp else 0,
        error=exchange.error,
    )


def replay_topic(settings: Settings) -> str:
    """The results topic of the settings' pipeline (their prefix, then wiretide.replay)."""
    return settings.prefix + TOPIC


def with_kafka(settings: Settings) -> Settings | None:
    """The settings with a bootstrap for the results topic: theirs, else the data dir's
    local broker when it runs (a tap's); None: no Kafka to use (none is started for this)."""
    if settings.kafka:
        return settings
    from wiretide.broker import local_broker

    broker = local_broker(settings)
    return settings.replace(kafka=broker.bootstrap) if broker.is_up() else None


def ensure_replay_topic(settings: Settings) -> None:
    """The results topic, made if missing (results carry bodies: messages up to 16 MiB)."""
    admin = AdminClient(settings.kafka_client(log_level=3))
    topic = replay_topic(settings)
    try:
        if topic in admin.list_topics(timeout=10).topics:
            return
        futures = admin.create_topics(
            [NewTopic(topic, 1, 1, config={"max.message.bytes": "16777216"})]
        )
        futures[topic].result()
    except KafkaException as ex:
        if "TOPIC_ALREADY_EXISTS" not in str(ex):
            raise WiretideError(f"cannot create topic {topic}: {ex}") from None


class ResultWriter:
    """`write(exchange, verdict)` as results arrive; `close()` (or `with`) stores the rest
    and waits until Kafka has every message. Raises WiretideError if Kafka refused one."""

    def __init__(self, settings: Settings | None = None, store: Store | None = None) -> None:
        self._store = store
        self._pending: list[ReplayResult] = []
        self._failed: list[str] = []
        self.written = 0
        self._producer: Producer | None = None
        settings = with_kafka(settings) if settings is not None else None
        if settings is not None:
            ensure_replay_topic(settings)
            self._topic = replay_topic(settings)
            self._producer = Producer(
                settings.kafka_client(acks="all", **{"enable.idempotence": True}, log_level=2)
            )
        if store is not None:
            ensure_table(store)

    def write(self, exchange: Exchange, verdict: Verdict) -> ReplayResult:
        result = result_of(exchange, verdict)
        self.write_results([result])
        return result

    def write_results(self, results: Iterable[ReplayResult]) -> None:
        for result in results:
            if self._producer is not None:
                self._produce(result)
            if self._store is not None:
                self._pending.append(result)
            self.written += 1
        if len(self._pending) >= BATCH:
            self._store_pending()

    def _produce(self, result: ReplayResult) -> None:
        assert self._producer is not None
        value = encode_replay_result(result)
        while True:
            try:
                self._producer.produce(
                    self._topic, key=result.run_id.encode(), value=value, on_delivery=self._done
                )
                break
            except BufferError:  # local queue full: let deliveries drain it
                self._producer.poll(0.5)
        self._producer.poll(0)

    def _done(self, err: object, _msg: object) -> None:
        if err is not None:
            self._failed.append(str(err))

    def _store_pending(self) -> None:
        if self._store is not None and self._pending:
            insert_results(self._store, self._pending)
            self._pending = []

    def close(self) -> None:
        self._store_pending()
        if self._producer is not None:
            left = self._producer.flush(60)
            if left or self._failed:
                why = self._failed[0] if self._failed else f"{left} not delivered in 60 s"
                raise WiretideError(f"replay results did not all reach Kafka: {why}")

    def __enter__(self) -> ResultWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
