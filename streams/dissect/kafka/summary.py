"""What one Kafka request or response amounts to: header fields, the topics and partitions
it names (with offsets, error codes, record counts), and its first non-zero error code.

The JSON body is kept small: at most `MAX_TOPICS` topics and `MAX_PARTITIONS` partition
entries are listed ("truncated": true says more were left out); the counts in the headers
(`partitions`, `record_count`) always cover the whole message.
"""

from __future__ import annotations

from typing import Any

from streams.dissect.common import compact_json

MAX_TOPICS = 32
MAX_PARTITIONS = 128
MAX_PATH_TOPICS = 64


class Summary:
    __slots__ = (
        "headers",
        "fields",
        "topics",
        "names",
        "error",
        "partitions",
        "records",
        "listed",
        "cut",
        "topic_ids",
        "by_id",
    )

    def __init__(self, topic_ids: dict[str, str] | None = None) -> None:
        self.headers: list[tuple[str, str]] = []
        self.fields: dict[str, Any] = {}
        self.topics: dict[str, dict[str, Any]] = {}
        self.names: set[str] = set()  # every topic named, for the call's path
        self.error = 0  # the first non-zero error code met
        self.partitions = 0
        self.records: int | None = None
        self.listed = 0  # partition entries in the body
        self.cut = False  # entries were left out of the body
        self.topic_ids = topic_ids if topic_ids is not None else {}
        self.by_id: set[str] = set()  # topics named by an id not known yet

    def head(self, name: str, value: object) -> None:
        if value is None:
            return
        if isinstance(value, bool):
            value = "true" if value else "false"
        self.headers.append((name, str(value)))

    def note(self, code: int) -> int:
        if code and not self.error:
            self.error = code
        return code

    def add_records(self, count: int) -> None:
        self.records = (self.records or 0) + count

    def topic(self, name: str | None) -> dict[str, Any]:
        """The body entry of a topic (a throwaway dict once the body is full)."""
        name = name if name is not None else ""
        self.names.add(name)
        entry = self.topics.get(name)
        if entry is None:
            if len(self.topics) >= MAX_TOPICS:
                self.cut = True
                return {}
            entry = self.topics[name] = {}
        return entry

    def topic_by_id(self, topic_id: str) -> dict[str, Any]:
        name = self.topic_ids.get(topic_id)
        if name is not None:
            return self.topic(name)
        self.by_id.add(topic_id)
        return self.topic(topic_id)

    def resolve(self) -> None:
        """Name the topics known only by id when they were read, if the flow has learned
        their names since (a request's ids are named by the time its response comes)."""
        for topic_id in [t for t in self.by_id if t in self.topic_ids]:
            self.by_id.discard(topic_id)
            name = self.topic_ids[topic_id]
            self.names.discard(topic_id)
            self.names.add(name)
            entry = self.topics.pop(topic_id, None)
            if entry is not None:
                self.topics.setdefault(name, {}).update(entry)

    def partition(self, topic: dict[str, Any], index: int, **fields: Any) -> None:
        self.partitions += 1
        if self.listed >= MAX_PARTITIONS:
            self.cut = True
            return
        self.listed += 1
        topic[str(index)] = fields

    def body(self) -> bytes:
        doc: dict[str, Any] = dict(self.fields)
        if self.topics:
            doc["topics"] = self.topics
        if self.cut:
            doc["truncated"] = True
        if not doc:
            return b""
        return compact_json(doc)

    def finish_headers(self) -> list[tuple[str, str]]:
        out = list(self.headers)
        if self.partitions:
            out.append(("partitions", str(self.partitions)))
        if self.records is not None:
            out.append(("record_count", str(self.records)))
        return out


def path_of(*summaries: Summary | None) -> str:
    names: set[str] = set()
    for s in summaries:
        if s is not None:
            names |= s.names
    names.discard("")
    ordered = sorted(names)
    if len(ordered) > MAX_PATH_TOPICS:
        ordered = ordered[:MAX_PATH_TOPICS] + ["..."]
    return ",".join(ordered)
