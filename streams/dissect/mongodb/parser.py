"""MongoDB wire protocol: message framing per direction and message decoders.

Every message starts with a 16-byte header (int32 length, requestID, responseTo,
opCode, little-endian). Messages longer than the cap keep their head and the rest is
skipped without buffering.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

from streams.dissect.base import DissectError
from streams.dissect.common import SegmentBuffer
from streams.dissect.mongodb import bson

DEFAULT_MAX_MESSAGE = 1024 * 1024
MAX_LENGTH = 48_000_000  # the server's maxMessageSizeBytes
OP_REPLY, OP_QUERY, OP_COMPRESSED, OP_MSG = 1, 2004, 2012, 2013
OPCODES = {
    1: "OP_REPLY", 2001: "OP_UPDATE", 2002: "OP_INSERT", 2004: "OP_QUERY", 2005: "OP_GET_MORE",
    2006: "OP_DELETE", 2007: "OP_KILL_CURSORS", 2012: "OP_COMPRESSED", 2013: "OP_MSG",
}  # fmt: skip
COMPRESSORS = {0: "noop", 1: "snappy", 2: "zlib", 3: "zstd"}
CHECKSUM_PRESENT, MORE_TO_COME = 0x1, 0x2
_HEADER = struct.Struct("<iiii")


@dataclass(frozen=True, slots=True)
class Message:
    """One wire message; `body` is what follows the header (cut at the cap: `truncated`)."""

    request_id: int
    response_to: int
    opcode: int
    body: bytes
    seq: int
    ts: int
    end_ts: int
    size: int
    truncated: bool = False


@dataclass(slots=True)
class Decoded:
    """What a message says: its command or reply document and how it travelled."""

    doc: dict[str, Any] | None = None  # None: could not be decoded
    first_key: str = ""
    flags: int = 0
    op: str = ""
    compressor: str = ""
    namespace: str = ""  # OP_QUERY's fullCollectionName
    documents: int = -1  # OP_REPLY's numberReturned
    notes: list[str] = field(default_factory=list)


class Framer(SegmentBuffer):
    """Bytes of one direction in, whole `Message`s out (raises `DissectError` on bad headers)."""

    def __init__(self, max_message: int = DEFAULT_MAX_MESSAGE) -> None:
        super().__init__()
        self.max_message = max_message

    def _frames(self, buf: bytearray, old: int, ts: int, out: list[Message]) -> int:
        pos, end = 0, len(buf)
        while end - pos >= 16:
            length, request_id, response_to, opcode = _HEADER.unpack_from(buf, pos)
            if not 16 <= length <= MAX_LENGTH or opcode not in OPCODES:
                raise DissectError(f"not a MongoDB message header (length {length}, op {opcode})")
            start_ts = self.ts if pos < old else ts
            at = (self.seq + pos) & 0xFFFFFFFF
            if length <= end - pos:
                body = bytes(buf[pos + 16 : pos + length])
                out.append(Message(request_id, response_to, opcode, body, at, start_ts, ts, length))
                pos += length
                continue
            if length - 16 > self.max_message and end - pos >= 16 + self.max_message:
                body = bytes(buf[pos + 16 : pos + 16 + self.max_message])
                self.cut = Message(request_id, response_to, opcode, body, at, start_ts, ts,
                                   length, True)  # fmt: skip
                self.skip = length - (end - pos)
                pos = end
            break
        return pos


def decode(msg: Message, max_docs: int) -> Decoded:
    """The command or reply a message carries; document sequences (OP_MSG kind 1) join
    the body under their identifier, at most `max_docs` documents each."""
    return _decode(msg.opcode, msg.body, max_docs, msg.truncated)


def _decode(opcode: int, body: bytes, max_docs: int, truncated: bool) -> Decoded:
    out = Decoded(op=OPCODES.get(opcode, str(opcode)))
    try:
        if opcode == OP_MSG:
            _op_msg(body, max_docs, out)
        elif opcode == OP_QUERY:
            _op_query(body, out)
        elif opcode == OP_REPLY:
            _op_reply(body, out)
        elif opcode == OP_COMPRESSED:
            inner = _op_compressed(body, out)
            if inner is not None:
                decoded = _decode(inner[0], inner[1], max_docs, truncated)
                decoded.compressor = out.compressor
                return decoded
    except (bson.BsonError, struct.error, IndexError, ValueError, zlib.error) as e:
        out.doc = None
        out.notes.append(f"{type(e).__name__}: {e}")
    return out


def _op_msg(body: bytes, max_docs: int, out: Decoded) -> None:
    flags = struct.unpack_from("<I", body, 0)[0]
    out.flags = flags
    end = len(body) - (4 if flags & CHECKSUM_PRESENT else 0)
    pos = 4
    doc: dict[str, Any] | None = None
    sequences: dict[str, list[Any]] = {}
    while pos < end:
        kind = body[pos]
        pos += 1
        if kind == 0:
            if doc is None:
                out.first_key = bson.first_key(body, pos)
            size = bson.document_size(body, pos)
            doc = bson.decode(body, pos)
            pos += size
        elif kind == 1:
            size = struct.unpack_from("<i", body, pos)[0]
            stop = pos + size
            if size < 5 or stop > end:
                raise ValueError("bad document sequence size")
            name_end = body.index(b"\0", pos + 4)
            name = body[pos + 4 : name_end].decode("utf-8", "replace")
            docs = sequences.setdefault(name, [])
            at = name_end + 1
            while at < stop:
                n = bson.document_size(body, at)
                if len(docs) < max_docs:
                    docs.append(bson.decode(body, at))
                else:
                    out.notes.append("documents_capped")
                at += n
            pos = stop
        else:
            raise ValueError(f"unknown OP_MSG section kind {kind}")
    if doc is None:
        raise ValueError("OP_MSG without a body section")
    out.doc = {**doc, **sequences}


def _op_query(body: bytes, out: Decoded) -> None:
    out.flags = struct.unpack_from("<i", body, 0)[0]
    end = body.index(b"\0", 4)
    out.namespace = body[4:end].decode("utf-8", "replace")
    pos = end + 1 + 8  # numberToSkip, numberToReturn
    out.first_key = bson.first_key(body, pos)
    query = bson.decode(body, pos)
    if out.first_key in ("$query", "query") and isinstance(query.get(out.first_key), dict):
        inner = query[out.first_key]  # a wrapped command: {$query: {...}, $readPreference}
        out.first_key = next(iter(inner), "")
    out.doc = query


def _op_reply(body: bytes, out: Decoded) -> None:
    out.flags, _, _, returned = struct.unpack_from("<iqii", body, 0)
    out.documents = returned
    pos = 20
    if returned and pos < len(body):
        out.doc = bson.decode(body, pos)  # a command's reply is its one document
    else:
        out.doc = {}


def _op_compressed(body: bytes, out: Decoded) -> tuple[int, bytes] | None:
    """(original opcode, its body) when the compressor is one Wiretide reads (noop, zlib);
    else None, with the compressor named in `out`."""
    original, size, compressor = struct.unpack_from("<iiB", body, 0)
    out.compressor = COMPRESSORS.get(compressor, str(compressor))
    data = body[9:]
    if compressor == 0:
        return original, data
    if compressor == 2:
        return original, zlib.decompressobj().decompress(data, max(size, 0))
    out.notes.append(f"{out.compressor} not decoded")
    return None
