"""AMQP 0-9-1 as data: every method's name, arguments, replies and sender, and the basic
content properties (from the protocol's XML spec with RabbitMQ's extensions)."""

from __future__ import annotations

from dataclasses import dataclass

FRAME_METHOD, FRAME_HEADER, FRAME_BODY, FRAME_HEARTBEAT = 1, 2, 3, 8
FRAME_END = 0xCE
PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"

CLIENT, SERVER, BOTH = "C", "S", "B"  # who may send a method


@dataclass(frozen=True, slots=True)
class MethodSpec:
    class_id: int
    method_id: int
    name: str  # "class.method", e.g. "queue.declare-ok"
    args: tuple[tuple[str, str], ...]  # (type, name); names starting "reserved" are hidden
    replies: frozenset[int]  # method ids that answer it in the same class; empty = async
    content: bool  # followed by a content header and body frames
    sender: str  # CLIENT, SERVER or BOTH


# class id -> (name, {method id: (name, "type arg, ...", reply ids, content, sender)})
_CLASSES: dict[int, tuple[str, dict[int, tuple[str, str, tuple[int, ...], bool, str]]]] = {
    10: ("connection", {
        10: ("start", "octet version-major, octet version-minor, table server-properties, "
                      "longstr mechanisms, longstr locales", (11,), False, SERVER),
        11: ("start-ok", "table client-properties, shortstr mechanism, longstr response, "
                         "shortstr locale", (), False, CLIENT),
        20: ("secure", "longstr challenge", (21,), False, SERVER),
        21: ("secure-ok", "longstr response", (), False, CLIENT),
        30: ("tune", "short channel-max, long frame-max, short heartbeat", (31,), False, SERVER),
        31: ("tune-ok", "short channel-max, long frame-max, short heartbeat", (), False, CLIENT),
        40: ("open", "shortstr virtual-host, shortstr reserved-1, bit reserved-2", (41,), False,
             CLIENT),
        41: ("open-ok", "shortstr reserved-1", (), False, SERVER),
        50: ("close", "short reply-code, shortstr reply-text, short class-id, short method-id",
             (51,), False, BOTH),
        51: ("close-ok", "", (), False, BOTH),
        60: ("blocked", "shortstr reason", (), False, SERVER),
        61: ("unblocked", "", (), False, SERVER),
        70: ("update-secret", "longstr new-secret, shortstr reason", (71,), False, CLIENT),
        71: ("update-secret-ok", "", (), False, SERVER),
    }),
    20: ("channel", {
        10: ("open", "shortstr reserved-1", (11,), False, CLIENT),
        11: ("open-ok", "longstr reserved-1", (), False, SERVER),
        20: ("flow", "bit active", (21,), False, BOTH),
        21: ("flow-ok", "bit active", (), False, BOTH),
        40: ("close", "short reply-code, shortstr reply-text, short class-id, short method-id",
             (41,), False, BOTH),
        41: ("close-ok", "", (), False, BOTH),
    }),
    40: ("exchange", {
        10: ("declare", "short reserved-1, shortstr exchange, shortstr type, bit passive, "
                        "bit durable, bit auto-delete, bit internal, bit no-wait, "
                        "table arguments", (11,), False, CLIENT),
        11: ("declare-ok", "", (), False, SERVER),
        20: ("delete", "short reserved-1, shortstr exchange, bit if-unused, bit no-wait", (21,),
             False, CLIENT),
        21: ("delete-ok", "", (), False, SERVER),
        30: ("bind", "short reserved-1, shortstr destination, shortstr source, "
                     "shortstr routing-key, bit no-wait, table arguments", (31,), False, CLIENT),
        31: ("bind-ok", "", (), False, SERVER),
        40: ("unbind", "short reserved-1, shortstr destination, shortstr source, "
                       "shortstr routing-key, bit no-wait, table arguments", (51,), False, CLIENT),
        51: ("unbind-ok", "", (), False, SERVER),
    }),
    50: ("queue", {
        10: ("declare", "short reserved-1, shortstr queue, bit passive, bit durable, "
                        "bit exclusive, bit auto-delete, bit no-wait, table arguments", (11,),
             False, CLIENT),
        11: ("declare-ok", "shortstr queue, long message-count, long consumer-count", (), False,
             SERVER),
        20: ("bind", "short reserved-1, shortstr queue, shortstr exchange, shortstr routing-key, "
                     "bit no-wait, table arguments", (21,), False, CLIENT),
        21: ("bind-ok", "", (), False, SERVER),
        30: ("purge", "short reserved-1, shortstr queue, bit no-wait", (31,), False, CLIENT),
        31: ("purge-ok", "long message-count", (), False, SERVER),
        40: ("delete", "short reserved-1, shortstr queue, bit if-unused, bit if-empty, "
                       "bit no-wait", (41,), False, CLIENT),
        41: ("delete-ok", "long message-count", (), False, SERVER),
        50: ("unbind", "short reserved-1, shortstr queue, shortstr exchange, "
                       "shortstr routing-key, table arguments", (51,), False, CLIENT),
        51: ("unbind-ok", "", (), False, SERVER),
    }),
    60: ("basic", {
        10: ("qos", "long prefetch-size, short prefetch-count, bit global", (11,), False, CLIENT),
        11: ("qos-ok", "", (), False, SERVER),
        20: ("consume", "short reserved-1, shortstr queue, shortstr consumer-tag, bit no-local, "
                        "bit no-ack, bit exclusive, bit no-wait, table arguments", (21,), False,
             CLIENT),
        21: ("consume-ok", "shortstr consumer-tag", (), False, SERVER),
        30: ("cancel", "shortstr consumer-tag, bit no-wait", (31,), False, BOTH),
        31: ("cancel-ok", "shortstr consumer-tag", (), False, BOTH),
        40: ("publish", "short reserved-1, shortstr exchange, shortstr routing-key, "
                        "bit mandatory, bit immediate", (), True, CLIENT),
        50: ("return", "short reply-code, shortstr reply-text, shortstr exchange, "
                       "shortstr routing-key", (), True, SERVER),
        60: ("deliver", "shortstr consumer-tag, longlong delivery-tag, bit redelivered, "
                        "shortstr exchange, shortstr routing-key", (), True, SERVER),
        70: ("get", "short reserved-1, shortstr queue, bit no-ack", (71, 72), False, CLIENT),
        71: ("get-ok", "longlong delivery-tag, bit redelivered, shortstr exchange, "
                       "shortstr routing-key, long message-count", (), True, SERVER),
        72: ("get-empty", "shortstr reserved-1", (), False, SERVER),
        80: ("ack", "longlong delivery-tag, bit multiple", (), False, BOTH),
        90: ("reject", "longlong delivery-tag, bit requeue", (), False, CLIENT),
        100: ("recover-async", "bit requeue", (), False, CLIENT),
        110: ("recover", "bit requeue", (111,), False, CLIENT),
        111: ("recover-ok", "", (), False, SERVER),
        120: ("nack", "longlong delivery-tag, bit multiple, bit requeue", (), False, BOTH),
    }),
    85: ("confirm", {
        10: ("select", "bit no-wait", (11,), False, CLIENT),
        11: ("select-ok", "", (), False, SERVER),
    }),
    90: ("tx", {
        10: ("select", "", (11,), False, CLIENT),
        11: ("select-ok", "", (), False, SERVER),
        20: ("commit", "", (21,), False, CLIENT),
        21: ("commit-ok", "", (), False, SERVER),
        30: ("rollback", "", (31,), False, CLIENT),
        31: ("rollback-ok", "", (), False, SERVER),
    }),
}  # fmt: skip


def _args(text: str) -> tuple[tuple[str, str], ...]:
    return tuple((t, n) for t, _, n in (a.strip().partition(" ") for a in text.split(",") if a))


METHODS: dict[tuple[int, int], MethodSpec] = {
    (cid, mid): MethodSpec(cid, mid, f"{cname}.{m[0]}", _args(m[1]), frozenset(m[2]), m[3], m[4])
    for cid, (cname, methods) in _CLASSES.items()
    for mid, m in methods.items()
}
CLASS_IDS = frozenset(_CLASSES)
REQUEST_OF: dict[tuple[int, int], MethodSpec] = {
    (s.class_id, r): s for s in METHODS.values() for r in s.replies
}  # reply -> the method it answers

CONNECTION_CLOSE, CHANNEL_CLOSE = (10, 50), (20, 40)
CLOSE_OK = {(10, 51), (20, 41)}
SECRET_ARGS = frozenset({"response", "new-secret"})  # credentials: only their size is shown
KEY_ARGS = (
    "exchange",
    "source",
    "destination",
    "routing-key",
    "queue",
    "consumer-tag",
    "delivery-tag",
)

# Basic content properties, in property-flag order (bit 15 first).
PROPERTIES: tuple[tuple[str, str], ...] = _args(
    "shortstr content-type, shortstr content-encoding, table headers, octet delivery-mode, "
    "octet priority, shortstr correlation-id, shortstr reply-to, shortstr expiration, "
    "shortstr message-id, timestamp timestamp, shortstr type, shortstr user-id, "
    "shortstr app-id, shortstr cluster-id"
)


def method_name(class_id: int, method_id: int) -> str:
    spec = METHODS.get((class_id, method_id))
    return spec.name if spec else f"{class_id}.{method_id}"
