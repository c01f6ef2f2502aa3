"""Records <-> Avro messages: the only place that knows both the dataclasses and schemas.

The batch messages on the hot paths (segment batches into the stream worker, call batches
out of it and into the sink) go through codecs compiled at import time from the same
.avsc schemas: straight-line Python per field that reads and writes the message bytes
directly and builds the frozen dataclasses through their slots. fastavro's generic
reader and writer walk the schema for every value (and read one byte at a time from a
file object), which cost more than everything else in the worker; the compiled codecs
are several times faster.

They are exact: the same bytes out (fastavro writes each non-empty array as one block,
and so do they) and the same records in. Whatever they are not sure of - a value of an
unexpected type or range, a corrupt or unusual message - makes them give up, and the
generic fastavro path (`_generic_*`) then does the work, raising exactly the errors it
always raised. Should a schema or a dataclass change shape so that the two no longer
line up field for field, the compiled codecs are not used at all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from operator import attrgetter
from pathlib import Path
from typing import Any

from schemas.codec import avro_bytes, avro_long, codec, varint
from schemas.records import (
    ENDPOINT_RANGES,
    SEGMENT_RANGES,
    VIOLATION_RANGES,
    ApiCall,
    Endpoint,
    Segment,
    Violation,
    fit_call,
    fit_numbers,
    slot_fields,
)
from schemas.replay import ReplayResult

_SEGMENT_FIELDS = Segment.__slots__
_CALL_SIMPLE = [
    f
    for f in ApiCall.__slots__
    if f not in ("request_headers", "response_headers", "flags", "verdicts")
]
_GET_SIMPLE = attrgetter(*_CALL_SIMPLE)


# ------------------------------------------------------------------- building records


# ------------------------------------------------------------------ generic (fastavro) path


def _generic_encode_segment_batch(flow: str, segments: Iterable[Segment]) -> bytes:
    records = [{f: getattr(s, f) for f in _SEGMENT_FIELDS} for s in segments]
    return codec("SegmentBatch").encode({"flow_id": flow, "segments": records})


def _generic_decode_segment_batch(data: bytes) -> list[Segment]:
    record = codec("SegmentBatch").decode(data)
    return [Segment(**r) for r in record["segments"]]


def _call_record(call: ApiCall) -> dict[str, Any]:
    rec = dict(zip(_CALL_SIMPLE, _GET_SIMPLE(call), strict=True))
    rec["request_headers"] = [{"name": n, "value": v} for n, v in call.request_headers]
    rec["response_headers"] = [{"name": n, "value": v} for n, v in call.response_headers]
    rec["flags"] = list(call.flags)
    rec["verdicts"] = [{"rule": r, "verdict": v} for r, v in call.verdicts]
    return rec


def _call(rec: dict[str, Any]) -> ApiCall:
    rec["request_headers"] = tuple((h["name"], h["value"]) for h in rec["request_headers"])
    rec["response_headers"] = tuple((h["name"], h["value"]) for h in rec["response_headers"])
    rec["flags"] = tuple(rec["flags"])
    rec["verdicts"] = tuple((v["rule"], v["verdict"]) for v in rec["verdicts"])
    return ApiCall(**rec)


def _generic_encode_call(call: ApiCall) -> bytes:
    return codec("ApiCall").encode(_call_record(call))


def _generic_decode_call(data: bytes) -> ApiCall:
    return _call(codec("ApiCall").decode(data))


def _generic_encode_call_batch(flow: str, calls: Iterable[ApiCall]) -> bytes:
    return codec("CallBatch").encode({"flow_id": flow, "calls": [_call_record(c) for c in calls]})


def _generic_decode_call_batch(data: bytes) -> list[ApiCall]:
    return [_call(rec) for rec in codec("CallBatch").decode(data)["calls"]]


# ------------------------------------------------------------------------ compiled codecs


class _Unsupported(Exception):
    """The schema uses something the compiler does not handle: stay on fastavro."""


_INT64 = 1 << 63


_HIGH: dict[int, bytes] = {}  # u >> 28 -> its varint (timestamps share their high bits)
_LONGS: dict[int, bytes] = {}  # recent values -> their encoding (ports, sizes, end times)


def _long(v: int) -> bytes:
    """Zigzag varint of an Avro long that is not in [0, 64); raises outside int64."""
    if not -_INT64 <= v < _INT64:
        raise OverflowError(v)
    u = (v << 1) ^ (v >> 63)
    if u < 0x10000000:
        enc = varint(u)
    else:
        high = u >> 28
        tail = _HIGH.get(high)
        if tail is None:
            if len(_HIGH) >= 4096:
                _HIGH.clear()
            tail = _HIGH[high] = varint(high)
        low = u & 0xFFFFFFF
        low = (
            (low & 0x7F)
            | ((low << 1) & 0x7F00)
            | ((low << 2) & 0x7F0000)
            | ((low << 3) & 0x7F000000)
        )
        enc = (low | 0x80808080).to_bytes(4, "little") + tail
    if len(_LONGS) >= 4096:
        _LONGS.clear()
    _LONGS[v] = enc
    return enc


# Text fields whose values repeat from record to record (addresses, flows, names, versions,
# header names): their encodings are remembered. Unique text (ids, paths, header values)
# would only churn the table.
_REPEATING = frozenset(
    {
        "protocol", "src_ip", "dst_ip", "flow_id", "node", "source", "transport", "method",
        "request_version", "reason", "response_version", "src_pod", "src_namespace",
        "src_service", "dst_pod", "dst_namespace", "dst_service", "name", "rule", "flags",
    }
)  # fmt: skip
_TEXTS: dict[str, bytes] = {}  # recent repeating text -> its encoding (length + UTF-8)


def _text(s: str) -> bytes:
    """The Avro encoding of a string, remembered (see _REPEATING)."""
    b = s.encode()
    n = len(b)
    enc = (bytes((n << 1,)) if n < 64 else _LONGS.get(n) or _long(n)) + b
    if len(_TEXTS) >= 4096:
        _TEXTS.clear()
    _TEXTS[s] = enc
    return enc


# Arrays of string pairs (headers, verdicts) -> their whole encoding: a client sends the
# same headers call after call, and one lookup replaces a dozen string encodings.
_PAIR_ARRAYS: dict[tuple, bytes] = {}


def _pair_array(items: tuple) -> bytes:
    """The Avro encoding of a non-empty array of (string, string) records, remembered."""
    n = len(items)
    out = bytearray(bytes((n << 1,)) if n < 64 else _LONGS.get(n) or _long(n))
    for a, b in items:
        for s in (a, b):
            enc = s.encode()
            k = len(enc)
            out += bytes((k << 1,)) if k < 64 else _LONGS.get(k) or _long(k)
            out += enc
    out.append(0)
    enc = bytes(out)
    if len(_PAIR_ARRAYS) >= 1024:
        _PAIR_ARRAYS.clear()
    _PAIR_ARRAYS[items] = enc
    return enc


_TAIL5: dict[bytes, int] = {}  # last 5 bytes of a 9-byte varint -> their bits, shifted


def _read_long(d: bytes, p: int) -> tuple[int, int]:
    """(value, next position) of a varint of two or more bytes starting at d[p]."""
    b = d[p + 1]
    n = (d[p] & 127) | ((b & 127) << 7)
    if b < 128:
        return (n >> 1) ^ -(n & 1), p + 2
    b = d[p + 2]
    n |= (b & 127) << 14
    if b < 128:
        return (n >> 1) ^ -(n & 1), p + 3
    b = d[p + 3]
    n |= (b & 127) << 21
    if b < 128:
        return (n >> 1) ^ -(n & 1), p + 4
    b = d[p + 4]
    if b < 128:
        n |= b << 28
        return (n >> 1) ^ -(n & 1), p + 5
    # Six bytes or more. Timestamps take nine and share their last five for ~0.1 s.
    tail = d[p + 4 : p + 9]
    high = _TAIL5.get(tail)
    if high is not None:
        n |= high
        return (n >> 1) ^ -(n & 1), p + 9
    s = 28
    q = p + 4
    while b & 128:
        n |= (b & 127) << s
        s += 7
        q += 1
        b = d[q]
    n |= b << s
    if s > 63 or n >> 64:
        raise ValueError("varint longer than 64 bits")
    if s == 56:  # a nine-byte varint: remember its tail
        if len(_TAIL5) >= 4096:
            _TAIL5.clear()
        _TAIL5[tail] = n & ~0xFFFFFFF
    return (n >> 1) ^ -(n & 1), q + 1


def _read_len(d: bytes, p: int) -> tuple[int, int]:
    """(length, next position) for a string or bytes length that is not one small byte."""
    b = d[p]
    if b < 128:
        raise ValueError("negative length")  # one byte, odd: negative
    n, p = _read_long(d, p)
    if n < 0:
        raise ValueError("negative length")
    return n, p


# Varints of one byte: zigzag value (None: more bytes follow); as a length (-1: not one).
_ZZ1: list[int | None] = [(b >> 1) ^ -(b & 1) if b < 128 else None for b in range(256)]
_LEN1: list[int] = [b >> 1 if b < 128 and not b & 1 else -1 for b in range(256)]


# Runs of consecutive record fields whose values repeat together, call after call: the
# flow's endpoints (and the method), the response's status line, the flags and the
# Kubernetes names (the same per flow) with the verdicts. Each run is encoded whole and
# remembered by the tuple of its values: one lookup instead of one per field.
_RUNS: tuple[tuple[str, ...], ...] = (
    ("src_ip", "src_port", "dst_ip", "dst_port", "flow_id", "node", "source", "tls", "method"),
    ("status", "reason", "response_version"),
    ("flags", "src_pod", "src_namespace", "src_service", "dst_pod", "dst_namespace",
     "dst_service", "verdicts"),
)  # fmt: skip
_RUN_MEMO_MAX = 4096  # keys remembered per run before its memo starts over


def _run_at(fields: list[dict], i: int) -> list[dict] | None:
    """The run of `_RUNS` that starts at fields[i] with exactly its names, if any."""
    for run in _RUNS:
        n = len(run)
        if tuple(f["name"] for f in fields[i : i + n]) == run:
            return fields[i : i + n]
    return None


class _Compiler:
    """Emits one Python function per message type (see the module notes).

    Supported Avro: string, bytes, int, long, boolean, records and arrays. A record maps to
    a dataclass (`classes`) or, for a record of two strings, to a 2-tuple in field order.
    Arrays map to tuples inside a dataclass and to lists at the top of the message.
    """

    def __init__(self, named: dict[str, Any], classes: dict[str, type]) -> None:
        self.named = named
        self.classes = classes
        self.ns: dict[str, Any] = {
            "_long": _long,
            "_LONGS": _LONGS,
            "_TEXTS": _TEXTS,
            "_text": _text,
            "_PAIR_ARRAYS": _PAIR_ARRAYS,
            "_pair_array": _pair_array,
            "_read_long": _read_long,
            "_read_len": _read_len,
            "_ZZ1": _ZZ1,
            "_LEN1": _LEN1,
            "_new": object.__new__,
            "_Fallback": _Fallback,
            "_RUN_MEMO_MAX": _RUN_MEMO_MAX,
        }
        self.lines: list[str] = []
        self.depth = 1
        self.k = 0
        self.runs = 0

    # -- helpers ---------------------------------------------------------------------
    def var(self, stem: str) -> str:
        self.k += 1
        return f"{stem}{self.k}"

    def emit(self, line: str) -> None:
        self.lines.append("    " * self.depth + line)

    def resolve(self, t: Any) -> Any:
        if isinstance(t, str) and t in self.named:
            return self.named[t]
        if isinstance(t, dict) and set(t) - {
            "type",
            "name",
            "fields",
            "items",
            "doc",
            "namespace",
            "aliases",
            "default",
            "__fastavro_parsed",
            "__named_schemas",
        }:
            raise _Unsupported(f"schema attributes {sorted(t)}")
        return t

    def kind(self, t: Any) -> str:
        t = self.resolve(t)
        if isinstance(t, str):
            if t in ("string", "bytes", "int", "long", "boolean"):
                return t
            raise _Unsupported(t)
        if isinstance(t, dict) and t.get("type") in ("record", "array"):
            return t["type"]
        raise _Unsupported(repr(t))

    def pair_record(self, t: dict) -> bool:
        fields = t["fields"]
        return len(fields) == 2 and all(self.kind(f["type"]) == "string" for f in fields)

    def record_class(self, t: dict) -> tuple[type | None, tuple[str, ...]]:
        names = tuple(f["name"] for f in t["fields"])
        cls = self.classes.get(t["name"])
        if cls is not None:
            fields = slot_fields(cls)
            if fields is None or set(fields) != set(names) or len(names) != len(fields):
                raise _Unsupported(f"{t['name']} and {cls.__name__} do not line up")
            return cls, names
        if self.pair_record(t):
            return None, names
        raise _Unsupported(f"no Python type for record {t['name']}")

    def function(self, name: str, args: str) -> Callable[..., Any]:
        src = f"def {name}({args}):\n" + "\n".join(self.lines) + "\n"
        exec(compile(src, f"<schemas.serde {name}>", "exec"), self.ns)
        fn = self.ns[name]
        fn.__source__ = src
        self.lines = []
        self.depth = 1
        return fn

    # -- writing -----------------------------------------------------------------------
    def write_long_of(self, expr: str) -> None:
        v = self.var("v")
        self.emit(f"{v} = {expr}")
        self.emit(f"if type({v}) is not int: raise _Fallback")
        self.emit(f"if 0 <= {v} < 64: out.append({v} << 1)")
        self.emit(f"else: out += _LONGS.get({v}) or _long({v})")

    def write_len(self, n: str) -> None:
        self.emit(f"if {n} < 64: out.append({n} << 1)")
        self.emit(f"else: out += _LONGS.get({n}) or _long({n})")

    def write(self, t: Any, expr: str, top: bool = False, repeats: bool = False) -> None:
        kind = self.kind(t)
        t = self.resolve(t)
        if kind == "string" and repeats:
            self.emit(f"out += _TEXTS.get({expr}) or _text({expr})")
        elif kind == "string":
            b, n = self.var("b"), self.var("n")
            self.emit(f"{b} = {expr}.encode()")
            self.emit(f"{n} = len({b})")
            self.write_len(n)
            self.emit(f"out += {b}")
        elif kind == "bytes":
            b, n = self.var("b"), self.var("n")
            self.emit(f"{b} = {expr}")
            self.emit(f"if type({b}) is not bytes: raise _Fallback")
            self.emit(f"{n} = len({b})")
            self.write_len(n)
            self.emit(f"out += {b}")
        elif kind in ("int", "long"):
            self.write_long_of(expr)
        elif kind == "boolean":
            self.emit(f"out.append(1 if {expr} else 0)")
        elif kind == "array":
            items, item, n = self.var("items"), self.var("item"), self.var("n")
            self.emit(f"{items} = {expr}")
            if top:  # fastavro gets a list built from any iterable here
                self.emit(f"if type({items}) is not list: {items} = list({items})")
            else:  # a dataclass field: a tuple (any sequence works for fastavro too)
                self.emit(f"if type({items}) is not tuple: raise _Fallback")
                item_t = self.resolve(t["items"])
                if self.kind(item_t) == "record" and self.record_class(item_t)[0] is None:
                    # pairs of strings: the whole array's encoding, remembered
                    self.emit(
                        f"if {items}: out += _PAIR_ARRAYS.get({items}) or _pair_array({items})"
                    )
                    self.emit("else: out.append(0)")
                    return
            self.emit(f"{n} = len({items})")
            self.emit(f"if {n}:")
            self.depth += 1
            self.write_len(n)
            self.emit(f"for {item} in {items}:")
            self.depth += 1
            self.write(t["items"], item, repeats=repeats)
            self.depth -= 2
            self.emit("out.append(0)")
        else:  # record
            cls, names = self.record_class(t)
            if cls is None:  # a pair of strings
                a, b = self.var("a"), self.var("b")
                self.emit(f"{a}, {b} = {expr}")
                for f, x in zip(t["fields"], (a, b), strict=True):
                    self.write(f["type"], x, repeats=f["name"] in _REPEATING)
                return
            o = self.var("o")
            self.emit(f"{o} = {expr}")
            self.emit(f"if type({o}) is not {self.export(cls)}: raise _Fallback")
            fields = t["fields"]
            i = 0
            while i < len(fields):
                run = _run_at(fields, i)
                if run:
                    self.write_run(run, o)
                    i += len(run)
                    continue
                f = fields[i]
                self.write(f["type"], f"{o}.{f['name']}", repeats=f["name"] in _REPEATING)
                i += 1

    def write_run(self, run: list[dict], o: str) -> None:
        """Fields that repeat together from record to record (see _RUNS): one lookup of
        their values' tuple for their whole encoding. Numbers are checked to be ints first,
        as 1 == 1.0 == True would otherwise find another type's encoding."""
        values = [self.var("r") for _ in run]
        for f, v in zip(run, values, strict=True):
            self.emit(f"{v} = {o}.{f['name']}")
            kind = self.kind(f["type"])
            if kind in ("int", "long"):
                self.emit(f"if type({v}) is not int: raise _Fallback")
            elif kind == "array":
                self.emit(f"if type({v}) is not tuple: raise _Fallback")
        key = self.var("k")
        self.emit(f"{key} = ({', '.join(values)},)")
        memo, fn = self.run_encoder(run)
        self.emit(f"out += {memo}.get({key}) or {fn}({key})")

    def run_encoder(self, run: list[dict]) -> tuple[str, str]:
        """(name of the run's memo, name of a function that encodes a key and remembers
        it); only keys encoded without error are remembered."""
        self.runs += 1
        memo, fn = f"_RUN_MEMO{self.runs}", f"_run_encode{self.runs}"
        self.ns[memo] = {}
        sub = _Compiler(self.named, self.classes)
        sub.ns = self.ns
        args = [sub.var("a") for _ in run]
        sub.emit("out = bytearray()")
        sub.emit(f"{', '.join(args)}, = key")
        for f, a in zip(run, args, strict=True):
            sub.write(f["type"], a, repeats=f["name"] in _REPEATING)
        sub.emit("enc = bytes(out)")
        sub.emit(f"if len({memo}) >= _RUN_MEMO_MAX: {memo}.clear()")
        sub.emit(f"{memo}[key] = enc")
        sub.emit("return enc")
        sub.function(fn, "key")
        return memo, fn

    def export(self, cls: type) -> str:
        name = f"_cls_{cls.__name__}"
        self.ns[name] = cls
        return name

    def encoder(self, name: str, schema: dict, header: bytes) -> Callable[..., bytes]:
        """encode(value of each field of the top record, in order) -> message bytes"""
        self.ns["_HEADER"] = header
        fields = schema["fields"]
        args = [self.var("f") for _ in fields]
        self.emit("out = bytearray(_HEADER)")
        for f, arg in zip(fields, args, strict=True):
            self.write(f["type"], arg, top=True)
        self.emit("return bytes(out)")
        return self.function(name, ", ".join(args))

    # -- reading -----------------------------------------------------------------------
    def read_long_into(self, v: str) -> None:
        self.emit(f"{v} = _ZZ1[d[p]]")
        self.emit(f"if {v} is None: {v}, p = _read_long(d, p)")
        self.emit("else: p += 1")

    def read(self, t: Any, top: bool = False) -> str:
        """Emit code reading a value; returns the variable holding it."""
        kind = self.kind(t)
        t = self.resolve(t)
        if kind in ("string", "bytes"):
            # No bounds check: a slice past the end is short, and p then ends up past the
            # end, which the final check catches (every value takes at least one byte).
            n, e, v = self.var("n"), self.var("e"), self.var("v")
            self.emit(f"{n} = _LEN1[d[p]]")
            self.emit(f"if {n} < 0: {n}, p = _read_len(d, p)")
            self.emit("else: p += 1")
            self.emit(f"{e} = p + {n}")
            self.emit(f"{v} = d[p:{e}]{'.decode()' if kind == 'string' else ''}")
            self.emit(f"p = {e}")
            return v
        if kind in ("int", "long"):
            v = self.var("v")
            self.read_long_into(v)
            return v
        if kind == "boolean":
            v = self.var("v")
            self.emit(f"{v} = d[p] != 0")
            self.emit("p += 1")
            return v
        if kind == "array":
            lst, n, skip = self.var("lst"), self.var("n"), self.var("skip")
            self.emit(f"{lst} = []")
            self.read_long_into(n)
            self.emit(f"while {n}:")
            self.depth += 1
            self.emit(f"if {n} < 0:")
            self.depth += 1
            self.emit(f"{n} = -{n}")
            self.read_long_into(skip)
            self.depth -= 1
            self.emit(f"for _ in range({n}):")
            self.depth += 1
            item = self.read(t["items"])
            self.emit(f"{lst}.append({item})")
            self.depth -= 1
            self.read_long_into(n)
            self.depth -= 1
            if top:
                return lst
            v = self.var("t")
            self.emit(f"{v} = tuple({lst})")
            return v
        cls, names = self.record_class(t)
        if not names:
            raise _Unsupported("a record without fields")
        values = [self.read(f["type"]) for f in t["fields"]]
        o = self.var("o")
        if cls is None:
            self.emit(f"{o} = ({', '.join(values)})")
            return o
        self.emit(f"{o} = _new({self.export(cls)})")
        for f, v in zip(t["fields"], values, strict=True):
            setter = f"_set_{cls.__name__}_{f['name']}"
            self.ns[setter] = getattr(cls, f["name"]).__set__
            self.emit(f"{setter}({o}, {v})")
        return o

    def decoder(self, name: str, schema: dict, header: bytes, pick: int) -> Callable[[bytes], Any]:
        """decode(message) -> the value of the top record's field number `pick`"""
        self.ns["_HEADER"] = header
        self.emit("if type(d) is not bytes or d[:10] != _HEADER: raise _Fallback")
        self.emit("end = len(d)")
        self.emit("p = 10")
        values = [self.read(f["type"], top=True) for f in schema["fields"]]
        self.emit("if p != end: raise _Fallback")
        self.emit(f"return {values[pick]}")
        return self.function(name, "d")


class _Fallback(Exception):
    """A compiled codec met something it does not handle exactly: use the generic path."""


_CLASSES = {"dev.wiretide.Segment": Segment, "dev.wiretide.ApiCall": ApiCall}


def _compile(name: str, pick: int) -> tuple[Callable[..., bytes] | None, Callable | None]:
    """(encode(*top-level field values), decode(message) -> field `pick`) for one message
    type, or (None, None) when its schema and records do not line up."""
    c = codec(name)
    named = dict(c.schema.get("__named_schemas", {}))
    schema = c.schema
    if schema["name"] in _CLASSES:  # a single record: wrap it, the value is the record
        named[schema["name"]] = schema
        schema = {"name": "", "fields": [{"name": "value", "type": schema["name"]}]}
    try:
        comp = _Compiler(named, _CLASSES)
        enc = comp.encoder(f"encode_{name}", schema, c.header)
        dec = comp.decoder(f"decode_{name}", schema, c.header, pick)
    except _Unsupported:
        return None, None
    return enc, dec


# (encoder, decoder) per message type; None when the schema cannot be compiled
_ENC_SEGMENTS, _DEC_SEGMENTS = _compile("SegmentBatch", 1)  # decode -> the segments
_ENC_CALLS, _DEC_CALLS = _compile("CallBatch", 1)  # decode -> the calls
_ENC_CALL, _DEC_CALL = _compile("ApiCall", 0)
_CALL_BATCH_HEADER = codec("CallBatch").header
_SCHEMAS = Path(__file__).parent


# ------------------------------------------------------------------------------ public
# Each tries the compiled codec and, on any exception, does it again the generic way.
# Encoders fit numbers into their Avro (and, for calls, column) ranges first: see
# `fit_call` in records.py. Calls are fitted always (their columns are narrower than
# Avro); the other records only when the fast path fails, as capture bounds them already.


def encode_segment_batch(flow: str, segments: Iterable[Segment]) -> bytes:
    if type(segments) is not list:
        segments = list(segments)  # an iterator must survive a fallback
    if _ENC_SEGMENTS is not None:
        try:
            return _ENC_SEGMENTS(flow, segments)
        except Exception:
            pass
    try:
        segments = [fit_numbers(s, SEGMENT_RANGES)[0] for s in segments]
    except TypeError:
        pass  # not a number: fastavro says what it says about it
    return _generic_encode_segment_batch(flow, segments)


def decode_segment_batch(data: bytes) -> list[Segment]:
    """Either version of a segments message: columns (schemas/segment_wire.py, what the
    agent publishes) or one record per segment (SegmentBatch, older agents)."""
    from schemas.segment_wire import HEADER, decode_segments

    if isinstance(data, (bytes, bytearray, memoryview)) and data[:10] == HEADER:
        return decode_segments(data)
    if _DEC_SEGMENTS is not None:
        try:
            return _DEC_SEGMENTS(data)
        except Exception:
            pass
    return _generic_decode_segment_batch(data)


def encode_call(call: ApiCall) -> bytes:
    call = fit_call(call)
    if _ENC_CALL is not None:
        try:
            return _ENC_CALL(call)
        except Exception:
            pass
    return _generic_encode_call(call)


def decode_call(data: bytes) -> ApiCall:
    if _DEC_CALL is not None:
        try:
            return _DEC_CALL(data)
        except Exception:
            pass
    return _generic_decode_call(data)


def encode_call_batch(flow: str, calls: Iterable[ApiCall]) -> bytes:
    """One CallBatch message; raises if any call cannot be encoded (see
    `encode_call_batch_isolated` for the variant that sets such calls aside)."""
    calls = [fit_call(call) for call in calls]
    if _ENC_CALLS is not None:
        try:
            return _ENC_CALLS(flow, calls)
        except Exception:
            pass
    return _generic_encode_call_batch(flow, calls)


def decode_call_batch(data: bytes) -> list[ApiCall]:
    if _DEC_CALLS is not None:
        try:
            return _DEC_CALLS(data)
        except Exception:
            pass
    return _generic_decode_call_batch(data)


# ------------------------------------------------- call batches framed as an Avro container
# A CallBatch holds its calls as ApiCall records back to back, and an Avro object container
# file holds records back to back in blocks. So a store that reads container files
# (ClickHouse's Avro format) takes the calls of many messages as they came off the wire:
# no Python per call. Only the framing is checked here; the reader checks the records.

CALL_SCHEMA_JSON: str = (_SCHEMAS / "ApiCall.avsc").read_text()


def call_batch_records(data: bytes) -> tuple[int, int, int] | None:
    """(how many calls, start, end) of the ApiCall records in `data`, a CallBatch message
    whose calls are one block (as this module and fastavro write them); None for anything
    else (decode it instead). Beware: a message of several blocks without sizes looks
    like one block here, its later blocks as records; the caller must check the count."""
    if type(data) is not bytes or data[:10] != _CALL_BATCH_HEADER:
        return None
    try:
        p = 10
        n = _LEN1[data[p]]
        if n < 0:
            n, p = _read_len(data, p)
        else:
            p += 1
        p += n
        count = _ZZ1[data[p]]
        if count is None:
            count, p = _read_long(data, p)
        else:
            p += 1
    except (IndexError, ValueError):
        return None
    end = len(data)
    if count == 0:
        return (0, p, p) if p == end else None
    if count < 0 or p >= end or data[end - 1] != 0:
        return None  # a block with its size, or misframed: decode it
    return count, p, end - 1


def call_container_header(sync: bytes) -> bytes:
    """The start of an Avro container file of ApiCall records (no compression), whose
    blocks each end with `sync` (16 bytes)."""
    if len(sync) != 16:
        raise ValueError("an Avro sync marker is 16 bytes")
    meta = b"".join(
        avro_bytes(k) + avro_bytes(v)
        for k, v in ((b"avro.schema", CALL_SCHEMA_JSON.encode()), (b"avro.codec", b"null"))
    )
    return b"Obj\x01" + avro_long(2) + meta + b"\x00" + sync


def call_container_block(count: int, size: int) -> bytes:
    """What comes before `size` bytes of `count` records in a container block (the block
    then ends with the file's sync marker)."""
    return avro_long(count) + avro_long(size)


def encode_call_record(call: ApiCall) -> bytes:
    """One ApiCall record as it sits in a CallBatch (no single-object header)."""
    return encode_call(call)[10:]


@dataclass(frozen=True, slots=True)
class RejectedCall:
    """A call a stage cannot encode or store, and why, in one line."""

    call: ApiCall
    reason: str

    def dead_letter_value(self) -> tuple[bytes, str]:
        """(value for the dead-letter topic, its format): the call as an ApiCall message,
        exactly as it was (not fitted), else its repr ("repr") when it has no Avro form."""
        try:
            return _generic_encode_call(self.call), "avro"
        except Exception:
            return repr(self.call).encode("utf-8", "backslashreplace"), "repr"


def encode_call_batch_isolated(
    flow: str, calls: Iterable[ApiCall]
) -> tuple[bytes | None, list[RejectedCall]]:
    """(one CallBatch message of every call that can be encoded, or None when none can;
    the calls that cannot, with the reason). One bad call never takes its batch down:
    the batch is tried whole first, and call by call only when that fails."""
    calls = list(calls)
    try:
        return encode_call_batch(flow, calls), []
    except Exception:
        pass
    good: list[ApiCall] = []
    rejected: list[RejectedCall] = []
    for call in calls:
        try:
            encode_call(call)
            good.append(call)
        except Exception as ex:
            rejected.append(RejectedCall(call, _reason(call, ex)))
    return (encode_call_batch(flow, good) if good else None), rejected


def _reason(call: object, ex: Exception, limit: int = 300) -> str:
    call_id = getattr(call, "call_id", "?")
    text = " ".join(f"cannot encode call {call_id!s:.80}: {type(ex).__name__}: {ex}".split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ------------------------------------------------------ endpoints, violations (low volume)


def encode_violation(violation: Violation) -> bytes:
    violation = fit_numbers(violation, VIOLATION_RANGES)[0]
    return codec("Violation").encode({f: getattr(violation, f) for f in Violation.__slots__})


def decode_violation(data: bytes) -> Violation:
    return Violation(**codec("Violation").decode(data))


def encode_endpoint(endpoint: Endpoint) -> bytes:
    endpoint = fit_numbers(endpoint, ENDPOINT_RANGES)[0]
    rec = {f: getattr(endpoint, f) for f in Endpoint.__slots__}
    rec["labels"] = dict(endpoint.labels)
    return codec("Endpoint").encode(rec)


def decode_endpoint(data: bytes) -> Endpoint:
    rec = codec("Endpoint").decode(data)
    rec["labels"] = tuple(sorted(rec["labels"].items()))
    return Endpoint(**rec)


# ------------------------------------------------------------ replay results (low volume)


def encode_replay_result(result: ReplayResult) -> bytes:
    rec = {f: getattr(result, f) for f in ReplayResult.__slots__}
    rec["differences"] = [
        {"where": w, "recorded": a, "replayed": b} for w, a, b in result.differences
    ]
    rec["recorded"] = _call_record(fit_call(result.recorded))
    rec["request_headers"] = [{"name": n, "value": v} for n, v in result.request_headers]
    rec["response_headers"] = [{"name": n, "value": v} for n, v in result.response_headers]
    return codec("ReplayResult").encode(rec)


def decode_replay_result(data: bytes) -> ReplayResult:
    rec = codec("ReplayResult").decode(data)
    diffs = rec["differences"]
    rec["differences"] = tuple((d["where"], d["recorded"], d["replayed"]) for d in diffs)
    rec["recorded"] = _call(rec["recorded"])
    rec["request_headers"] = tuple((h["name"], h["value"]) for h in rec["request_headers"])
    rec["response_headers"] = tuple((h["name"], h["value"]) for h in rec["response_headers"])
    return ReplayResult(**rec)
