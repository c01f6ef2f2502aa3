"""RESP values as JSON: text for UTF-8 bulk strings, {"base64": ...} for binary ones,
lists for arrays and sets, objects for RESP3 maps, {"error": ...} for error replies, and
{"truncated": size, ...} with the kept prefix for values the cap cut."""

from __future__ import annotations

import base64
import json
import math
from typing import Any

from streams.dissect.common import compact_json
from streams.dissect.redis.events import Cut, Partial, Push, RespError, RespMap


def _bytes(b: bytes) -> Any:
    try:
        text = b.decode("utf-8")
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(b).decode("ascii")}
    if "\x00" in text:
        return {"base64": base64.b64encode(b).decode("ascii")}
    return text


def to_json(v: Any) -> Any:
    if type(v) is bytes:
        return _bytes(v)
    if v is None or type(v) in (str, int, bool):
        return v
    if type(v) is float:
        return v if math.isfinite(v) else str(v)
    if isinstance(v, list):
        out = [to_json(x) for x in v]
        omitted = getattr(v, "omitted", 0) if type(v) in (Partial, Push) else 0
        if omitted:
            out.append({"omitted": omitted})
        return out
    if type(v) is RespMap:
        obj: dict[str, Any] = {}
        for key, value in v.pairs:
            k = to_json(key)
            obj[k if type(k) is str else json.dumps(k, separators=(",", ":"))] = to_json(value)
        if v.omitted:
            obj["…omitted"] = v.omitted
        return obj
    if type(v) is RespError:
        return {"error": v.text}
    if type(v) is Cut:
        prefix = v.prefix
        try:
            prefix.decode("utf-8")
        except UnicodeDecodeError as e:
            if e.reason == "unexpected end of data":  # the cap split a character
                prefix = prefix[: e.start]
        kept = _bytes(prefix)
        if type(kept) is str:
            return {"truncated": v.size, "text": kept}
        return {"truncated": v.size, **kept}
    return str(v)


def dumps(v: Any) -> bytes:
    return compact_json(to_json(v))


def text(v: Any) -> str:
    """A value as a short string: channel names, command names."""
    if type(v) is bytes:
        return v.decode("utf-8", "replace")
    if type(v) is Cut:
        return v.prefix.decode("utf-8", "replace")
    return "" if v is None else str(v)
