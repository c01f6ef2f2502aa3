"""Response bodies of the APIs clients use most, read into a `Summary`: error codes at
every level (the first non-zero one becomes the call's status), offsets, record counts.

Each reader gets the body after the response header; `r.flexible` is already set.
Metadata and CreateTopics responses teach `s.topic_ids` the names of topic ids, which
later Fetch requests and responses on the flow refer to.
"""

from __future__ import annotations

from streams.dissect.kafka.summary import Summary
from streams.dissect.kafka.wire import Reader, count_records


def _throttle(r: Reader, s: Summary) -> None:
    s.head("throttle_time_ms", r.int32())


def produce(r: Reader, v: int, s: Summary) -> None:
    for _ in range(r.array_len()):
        topic = s.topic_by_id(r.uuid()) if v >= 13 else s.topic(r.string())
        for _ in range(r.array_len()):
            index = r.int32()
            error = s.note(r.int16())
            base_offset = r.int64()
            if v >= 2:
                r.int64()  # log append time
            if v >= 5:
                r.int64()  # log start offset
            if v >= 8:
                for _ in range(r.array_len()):
                    r.int32()
                    r.skip_string()
                    r.tagged_fields()
                r.skip_string()  # error message
            s.partition(topic, index, error=error, base_offset=base_offset)
            r.tagged_fields()
        r.tagged_fields()
    if v >= 1:
        _throttle(r, s)
    r.tagged_fields()


def fetch(r: Reader, v: int, s: Summary) -> None:
    if v >= 1:
        _throttle(r, s)
    if v >= 7:
        s.head("error_code", s.note(r.int16()))
        s.head("session_id", r.int32())
    s.records = 0
    for _ in range(r.array_len()):
        topic = s.topic_by_id(r.uuid()) if v >= 13 else s.topic(r.string())
        for _ in range(r.array_len()):
            index = r.int32()
            error = s.note(r.int16())
            high_watermark = r.int64()
            if v >= 4:
                r.int64()  # last stable offset
            if v >= 5:
                r.int64()  # log start offset
            if v >= 4:
                for _ in range(r.array_len()):  # aborted transactions
                    r.int64()
                    r.int64()
                    r.tagged_fields()
            if v >= 11:
                r.int32()  # preferred read replica
            span = r.bytes_span()
            count = count_records(r.buf, *span)[0] if span is not None else 0
            s.add_records(count)
            s.partition(topic, index, error=error, high_watermark=high_watermark, records=count)
            r.tagged_fields()
        r.tagged_fields()
    r.tagged_fields()


def list_offsets(r: Reader, v: int, s: Summary) -> None:
    if v >= 2:
        _throttle(r, s)
    for _ in range(r.array_len()):
        topic = s.topic(r.string())
        for _ in range(r.array_len()):
            index = r.int32()
            error = s.note(r.int16())
            if v == 0:
                offsets = [r.int64() for _ in range(r.array_len())]
                s.partition(topic, index, error=error, offset=offsets[0] if offsets else -1)
                continue
            timestamp = r.int64()
            offset = r.int64()
            if v >= 4:
                r.int32()  # leader epoch
            s.partition(topic, index, error=error, offset=offset, timestamp=timestamp)
            r.tagged_fields()
        r.tagged_fields()
    r.tagged_fields()


def metadata(r: Reader, v: int, s: Summary) -> None:
    if v >= 3:
        _throttle(r, s)
    brokers = r.array_len()
    for _ in range(max(brokers, 0)):
        r.int32()  # node id
        r.skip_string()  # host
        r.int32()  # port
        if v >= 1:
            r.skip_string()  # rack
        r.tagged_fields()
    s.head("brokers", max(brokers, 0))
    if v >= 2:
        s.head("cluster_id", r.string())
    if v >= 1:
        s.head("controller_id", r.int32())
    n = r.array_len()
    for _ in range(max(n, 0)):
        error = s.note(r.int16())
        name = r.string()
        topic_id = r.uuid() if v >= 10 else None
        if topic_id is not None and name and topic_id != "AAAAAAAAAAAAAAAAAAAAAA":
            s.topic_ids[topic_id] = name
        if v >= 1:
            r.boolean()  # is internal
        partitions = r.array_len()
        for _ in range(max(partitions, 0)):
            s.note(r.int16())
            r.int32()  # partition index
            r.int32()  # leader
            if v >= 7:
                r.int32()  # leader epoch
            r.int32_array()  # replicas
            r.int32_array()  # in-sync replicas
            if v >= 5:
                r.int32_array()  # offline replicas
            r.tagged_fields()
        if v >= 8:
            r.int32()  # topic authorized operations
        r.tagged_fields()
        topic = s.topic(name)
        topic["error"] = error
        topic["partitions"] = max(partitions, 0)
        s.partitions += max(partitions, 0)
    s.head("topics", max(n, 0))
    if 8 <= v <= 10:
        r.int32()  # cluster authorized operations
    if v >= 13:
        s.head("error_code", s.note(r.int16()))
    r.tagged_fields()


def offset_commit(r: Reader, v: int, s: Summary) -> None:
    if v >= 3:
        _throttle(r, s)
    for _ in range(r.array_len()):
        topic = s.topic_by_id(r.uuid()) if v >= 10 else s.topic(r.string())
        for _ in range(r.array_len()):
            index = r.int32()
            s.partition(topic, index, error=s.note(r.int16()))
            r.tagged_fields()
        r.tagged_fields()
    r.tagged_fields()


def _offset_fetch_topics(r: Reader, v: int, s: Summary) -> None:
    for _ in range(r.array_len()):
        topic = s.topic_by_id(r.uuid()) if v >= 10 else s.topic(r.string())
        for _ in range(r.array_len()):
            index = r.int32()
            offset = r.int64()
            if v >= 5:
                r.int32()  # leader epoch
            r.skip_string()  # metadata
            error = s.note(r.int16())
            s.partition(topic, index, error=error, offset=offset)
            r.tagged_fields()
        r.tagged_fields()


def offset_fetch(r: Reader, v: int, s: Summary) -> None:
    if v >= 3:
        _throttle(r, s)
    if v <= 7:
        _offset_fetch_topics(r, v, s)
        if v >= 2:
            s.head("error_code", s.note(r.int16()))
    else:
        for _ in range(r.array_len()):
            r.skip_string()  # group id
            _offset_fetch_topics(r, v, s)
            s.head("error_code", s.note(r.int16()))
            r.tagged_fields()
    r.tagged_fields()


def find_coordinator(r: Reader, v: int, s: Summary) -> None:
    if v >= 1:
        _throttle(r, s)
    if v <= 3:
        s.head("error_code", s.note(r.int16()))
        if v >= 1:
            r.skip_string()  # error message
        s.head("node_id", r.int32())
        s.head("host", r.string())
        s.head("port", r.int32())
    else:
        for _ in range(r.array_len()):
            r.skip_string()  # key
            s.head("node_id", r.int32())
            s.head("host", r.string())
            s.head("port", r.int32())
            s.head("error_code", s.note(r.int16()))
            r.skip_string()  # error message
            r.tagged_fields()
    r.tagged_fields()


def join_group(r: Reader, v: int, s: Summary) -> None:
    if v >= 2:
        _throttle(r, s)
    s.head("error_code", s.note(r.int16()))
    s.head("generation_id", r.int32())
    if v >= 7:
        r.skip_string()  # protocol type
    s.head("group_protocol", r.string())
    s.head("leader", r.string())
    if v >= 9:
        r.boolean()  # skip assignment
    s.head("member_id", r.string())
    members = r.array_len()
    for _ in range(max(members, 0)):
        r.skip_string()
        if v >= 5:
            r.skip_string()
        r.bytes_span()
        r.tagged_fields()
    s.head("members", max(members, 0))
    r.tagged_fields()


def _error_only(r: Reader, v: int, s: Summary, throttle_from: int = 1) -> None:
    if v >= throttle_from:
        _throttle(r, s)
    s.head("error_code", s.note(r.int16()))


def heartbeat(r: Reader, v: int, s: Summary) -> None:
    _error_only(r, v, s)
    r.tagged_fields()


def leave_group(r: Reader, v: int, s: Summary) -> None:
    _error_only(r, v, s)
    if v >= 3:
        for _ in range(r.array_len()):
            r.skip_string()
            r.skip_string()
            s.note(r.int16())
            r.tagged_fields()
    r.tagged_fields()


def _assignment_topics(data: bytes, s: Summary) -> None:
    """Partitions given to a consumer (ConsumerProtocolAssignment, never flexible)."""
    a = Reader(data)
    a.int16()  # version
    for _ in range(a.array_len()):
        topic = s.topic(a.string())
        for index in a.int32_array():
            s.partition(topic, index)


def sync_group(r: Reader, v: int, s: Summary) -> None:
    _error_only(r, v, s)
    protocol_type = None
    if v >= 5:
        protocol_type = r.string()
        s.head("group_protocol", r.string())
    span = r.bytes_span()
    if span is not None and span[1] and protocol_type in (None, "consumer"):
        start, size = span
        try:
            _assignment_topics(r.buf[start : start + size], s)
        except Exception:
            pass  # not the consumer protocol after all: keep the call without topics
    r.tagged_fields()


def api_versions(r: Reader, v: int, s: Summary) -> None:
    error = s.note(r.int16())
    s.head("error_code", error)
    if error == 35 and v > 0:
        r.flexible = False  # a broker that does not know this version answers in v0
        v = 0
    n = r.array_len()
    for _ in range(max(n, 0)):
        r.skip(6)  # API key, min and max version
        r.tagged_fields()
    s.head("api_count", max(n, 0))
    if v >= 1:
        _throttle(r, s)
    r.tagged_fields()


def create_topics(r: Reader, v: int, s: Summary) -> None:
    if v >= 2:
        _throttle(r, s)
    for _ in range(r.array_len()):
        name = r.string()
        topic_id = r.uuid() if v >= 7 else None
        if topic_id is not None and name:
            s.topic_ids[topic_id] = name
        topic = s.topic(name)
        topic["error"] = s.note(r.int16())
        if v >= 1:
            r.skip_string()  # error message
        if v >= 5:
            topic["num_partitions"] = r.int32()
            topic["replication_factor"] = r.int16()
            for _ in range(r.array_len()):
                r.skip_string()
                r.skip_string()
                r.boolean()
                r.int8()
                r.boolean()
                r.tagged_fields()
        r.tagged_fields()
    r.tagged_fields()


def init_producer_id(r: Reader, v: int, s: Summary) -> None:
    _throttle(r, s)
    s.head("error_code", s.note(r.int16()))
    s.head("producer_id", r.int64())
    s.head("producer_epoch", r.int16())
    r.tagged_fields()
