"""The text of replay's flags into options: NAME=VALUE pairs, method lists, JSON paths,
the secrets file. Each bad value is a one-line ReplayError naming its flag."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from streams.rules.jsonpath import JsonPath, JsonPathError
from wiretide.replay.targets import ReplayError

_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_METHOD = re.compile(r"[A-Z]+")


def pair(flag: str, text: str, header: bool = False) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    name = name.strip()
    if not sep or not name:
        raise ReplayError(f"{flag} {text!r}: expected NAME=VALUE")
    if header and not _HEADER_NAME.fullmatch(name):
        raise ReplayError(f"{flag} {text!r}: {name!r} is not a header name")
    if header and ("\r" in value or "\n" in value):
        raise ReplayError(f"{flag} {text!r}: a header value cannot hold a line break")
    return name, value


def pairs(flag: str, texts: list[str] | None, header: bool = False) -> tuple[tuple[str, str], ...]:
    return tuple(pair(flag, t, header) for t in texts or ())


def methods(text: str | None) -> frozenset[str]:
    """--allow-methods POST,PUT: added to GET, HEAD and OPTIONS."""
    out = {"GET", "HEAD", "OPTIONS"}
    for item in (text or "").split(","):
        item = item.strip().upper()
        if not item:
            continue
        if not _METHOD.fullmatch(item):
            raise ReplayError(f"--allow-methods: {item!r} is not an HTTP method")
        out.add(item)
    return frozenset(out)


def prefixes(texts: list[str] | None) -> tuple[tuple[str, str], ...]:
    out = []
    for text in texts or ():
        old, new = pair("--path-prefix", text)
        if not old.startswith("/") or (new and not new.startswith("/")):
            raise ReplayError(f"--path-prefix {text!r}: expected /OLD=/NEW (paths start with /)")
        out.append((old, new))
    return tuple(out)


def json_settings(texts: list[str] | None) -> tuple[tuple[JsonPath, Any], ...]:
    """--set-json '$.user.id=42': the value is JSON when it parses, else a string."""
    out = []
    for text in texts or ():
        where, sep, raw = text.partition("=")
        if not sep:
            raise ReplayError(f"--set-json {text!r}: expected PATH=VALUE, e.g. $.user.id=42")
        try:
            path = JsonPath.parse(where.strip())
        except JsonPathError as ex:
            raise ReplayError(f"--set-json {text!r}: {ex}") from None
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        out.append((path, value))
    return tuple(out)


def secrets_file(path: str | None) -> tuple[tuple[str, str], ...]:
    """NAME=VALUE lines (# comments, blank lines); NAME fills a [REDACTED] header, query
    parameter or JSON key of that name."""
    if not path:
        return ()
    try:
        text = Path(path).read_text()
    except OSError as ex:
        raise ReplayError(f"--secrets {path}: {ex.strerror or ex}") from None
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        if not sep or not name.strip():
            raise ReplayError(f"--secrets {path}:{number}: expected NAME=VALUE")
        out.append((name.strip(), value.strip()))
    return tuple(out)


def duration(flag: str, text: str | None) -> float | None:
    """`10s`, `2m`, `1h` or plain seconds."""
    if text is None:
        return None
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*", text)
    if not m:
        raise ReplayError(f"{flag}: expected a duration such as 10s, 2m or 1h, got {text!r}")
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[m.group(2) or "s"]
    value = float(m.group(1)) * scale
    if value <= 0:
        raise ReplayError(f"{flag}: expected a duration above 0, got {text!r}")
    return value
