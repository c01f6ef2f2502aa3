"""Request bodies of the APIs clients use most, read into a `Summary` (field layouts as in
Apache Kafka's message definitions, every version a 3.9 broker accepts).

Each reader gets the body after the request header; `r.flexible` is already set.
"""

from __future__ import annotations

from streams.dissect.kafka.summary import Summary
from streams.dissect.kafka.wire import Reader, count_records


def _topic(r: Reader, s: Summary, by_id: bool) -> dict:
    return s.topic_by_id(r.uuid()) if by_id else s.topic(r.string())


def produce(r: Reader, v: int, s: Summary) -> None:
    if v >= 3:
        s.head("transactional_id", r.string())
    s.head("acks", r.int16())
    s.head("timeout_ms", r.int32())
    s.records = 0
    for _ in range(r.array_len()):
        topic = _topic(r, s, v >= 13)
        for _ in range(r.array_len()):
            index = r.int32()
            span = r.bytes_span()
            count, size = 0, 0
            if span is not None:
                count, _complete = count_records(r.buf, *span)
                size = span[1]
            s.add_records(count)
            s.partition(topic, index, records=count, bytes=size)
            r.tagged_fields()
        r.tagged_fields()
    r.tagged_fields()


def fetch(r: Reader, v: int, s: Summary) -> None:
    if v <= 14:
        r.int32()  # replica id: -1 for consumers
    s.head("max_wait_ms", r.int32())
    s.head("min_bytes", r.int32())
    if v >= 3:
        s.head("max_bytes", r.int32())
    if v >= 4:
        s.head("isolation_level", r.int8())
    if v >= 7:
        s.head("session_id", r.int32())
        s.head("session_epoch", r.int32())
    for _ in range(r.array_len()):
        topic = _topic(r, s, v >= 13)
        for _ in range(r.array_len()):
            index = r.int32()
            if v >= 9:
                r.int32()  # current leader epoch
            offset = r.int64()
            if v >= 12:
                r.int32()  # last fetched epoch
            if v >= 5:
                r.int64()  # log start offset
            r.int32()  # partition max bytes
            s.partition(topic, index, offset=offset)
            r.tagged_fields()
        r.tagged_fields()
    if v >= 7:
        forgotten = 0
        for _ in range(r.array_len()):
            if v >= 13:
                r.uuid()
            else:
                r.skip_string()
            forgotten += len(r.int32_array())
            r.tagged_fields()
        if forgotten:
            s.head("forgotten_partitions", forgotten)
    if v >= 11:
        rack = r.string()
        if rack:
            s.head("rack_id", rack)
    r.tagged_fields()


def list_offsets(r: Reader, v: int, s: Summary) -> None:
    r.int32()  # replica id
    if v >= 2:
        s.head("isolation_level", r.int8())
    for _ in range(r.array_len()):
        topic = s.topic(r.string())
        for _ in range(r.array_len()):
            index = r.int32()
            if v >= 4:
                r.int32()  # current leader epoch
            timestamp = r.int64()
            if v == 0:
                r.int32()  # max number of offsets
            s.partition(topic, index, timestamp=timestamp)
            r.tagged_fields()
        r.tagged_fields()
    if v >= 10:
        s.head("timeout_ms", r.int32())
    r.tagged_fields()


def metadata(r: Reader, v: int, s: Summary) -> None:
    n = r.array_len()
    if n < 0 or (n == 0 and v == 0):
        s.head("topics", "all")
    for _ in range(max(n, 0)):
        topic_id = r.uuid() if v >= 10 else None
        name = r.string()
        if name is None and topic_id is not None:
            s.topic_by_id(topic_id)
        else:
            s.topic(name)
        r.tagged_fields()
    if n > 0:
        s.head("topics", n)
    if v >= 4:
        s.head("allow_auto_topic_creation", r.boolean())
    r.tagged_fields()


def offset_commit(r: Reader, v: int, s: Summary) -> None:
    s.head("group_id", r.string())
    if v >= 1:
        s.head("generation_id", r.int32())
        s.head("member_id", r.string())
    if v >= 7:
        s.head("group_instance_id", r.string())
    if 2 <= v <= 4:
        r.int64()  # retention time
    for _ in range(r.array_len()):
        topic = s.topic(r.string())
        for _ in range(r.array_len()):
            index = r.int32()
            offset = r.int64()
            if v >= 6:
                r.int32()  # leader epoch
            if v == 1:
                r.int64()  # commit timestamp
            r.skip_string()  # metadata
            s.partition(topic, index, offset=offset)
            r.tagged_fields()
        r.tagged_fields()
    r.tagged_fields()


def _offset_fetch_topics(r: Reader, s: Summary) -> None:
    n = r.array_len()
    if n < 0:
        s.head("topics", "all")
    for _ in range(max(n, 0)):
        topic = s.topic(r.string())
        for index in r.int32_array():
            s.partition(topic, index)
        r.tagged_fields()


def offset_fetch(r: Reader, v: int, s: Summary) -> None:
    if v <= 7:
        s.head("group_id", r.string())
        _offset_fetch_topics(r, s)
    else:
        groups = []
        for _ in range(r.array_len()):
            groups.append(r.string() or "")
            if v >= 9:
                r.skip_string()  # member id
                r.int32()  # member epoch
            _offset_fetch_topics(r, s)
            r.tagged_fields()
        s.head("group_id", ",".join(groups))
    if v >= 7:
        s.head("require_stable", r.boolean())
    r.tagged_fields()


_KEY_TYPES = {0: "group", 1: "transaction", 2: "share"}


def find_coordinator(r: Reader, v: int, s: Summary) -> None:
    keys = []
    if v <= 3:
        keys.append(r.string() or "")
    key_type = r.int8() if v >= 1 else 0
    if v >= 4:
        for _ in range(r.array_len()):
            keys.append(r.string() or "")
    # Named "coordinator_*", not "*key*": the default redaction hides any "key" header.
    s.head("coordinator_type", _KEY_TYPES.get(key_type, str(key_type)))
    s.head("coordinator_for", ",".join(keys))
    r.tagged_fields()


def _subscription_topics(data: bytes, s: Summary) -> None:
    """Topics of a consumer's subscription (ConsumerProtocolSubscription, never flexible)."""
    sub = Reader(data)
    sub.int16()  # version
    for _ in range(sub.array_len()):
        s.topic(sub.string())


def join_group(r: Reader, v: int, s: Summary) -> None:
    s.head("group_id", r.string())
    s.head("session_timeout_ms", r.int32())
    if v >= 1:
        s.head("rebalance_timeout_ms", r.int32())
    s.head("member_id", r.string())
    if v >= 5:
        s.head("group_instance_id", r.string())
    protocol_type = r.string()
    s.head("protocol_type", protocol_type)
    names = []
    for _ in range(r.array_len()):
        names.append(r.string() or "")
        span = r.bytes_span()
        if span is not None and protocol_type == "consumer" and len(names) == 1:
            start, size = span
            try:
                _subscription_topics(r.buf[start : start + size], s)
            except Exception:
                pass  # user metadata is opaque to the group protocol; keep the call
        r.tagged_fields()
    s.head("protocols", ",".join(names))
    if v >= 8:
        r.skip_string()  # reason
    r.tagged_fields()


def heartbeat(r: Reader, v: int, s: Summary) -> None:
    s.head("group_id", r.string())
    s.head("generation_id", r.int32())
    s.head("member_id", r.string())
    if v >= 3:
        s.head("group_instance_id", r.string())
    r.tagged_fields()


def leave_group(r: Reader, v: int, s: Summary) -> None:
    s.head("group_id", r.string())
    if v <= 2:
        s.head("member_id", r.string())
    else:
        members = []
        for _ in range(r.array_len()):
            members.append(r.string() or "")
            r.skip_string()  # group instance id
            if v >= 5:
                r.skip_string()  # reason
            r.tagged_fields()
        s.head("member_id", ",".join(members))
    r.tagged_fields()


def sync_group(r: Reader, v: int, s: Summary) -> None:
    s.head("group_id", r.string())
    s.head("generation_id", r.int32())
    s.head("member_id", r.string())
    if v >= 3:
        s.head("group_instance_id", r.string())
    if v >= 5:
        s.head("protocol_type", r.string())
        s.head("group_protocol", r.string())
    n = r.array_len()
    for _ in range(max(n, 0)):
        r.skip_string()  # member id
        r.bytes_span()  # assignment
        r.tagged_fields()
    s.head("assignments", max(n, 0))
    r.tagged_fields()


def api_versions(r: Reader, v: int, s: Summary) -> None:
    if v >= 3:
        s.head("client_software_name", r.string())
        s.head("client_software_version", r.string())
        r.tagged_fields()


def create_topics(r: Reader, v: int, s: Summary) -> None:
    for _ in range(r.array_len()):
        topic = s.topic(r.string())
        topic["num_partitions"] = r.int32()
        topic["replication_factor"] = r.int16()
        for _ in range(r.array_len()):
            r.int32()
            r.int32_array()
            r.tagged_fields()
        for _ in range(r.array_len()):
            r.skip_string()
            r.skip_string()
            r.tagged_fields()
        r.tagged_fields()
    s.head("timeout_ms", r.int32())
    if v >= 1:
        s.head("validate_only", r.boolean())
    r.tagged_fields()


def init_producer_id(r: Reader, v: int, s: Summary) -> None:
    s.head("transactional_id", r.string())
    s.head("transaction_timeout_ms", r.int32())
    if v >= 3:
        s.head("producer_id", r.int64())
        s.head("producer_epoch", r.int16())
    r.tagged_fields()
