"""Reading time and duration literals: `datetime("1/2/2006, 3:04:05 PM")`,
`timestamp("2006-01-02T15:04:05.999999999Z")`, `duration("1h30m")`. All UTC, all exact
to the nanosecond."""

from __future__ import annotations

import calendar
import re
from datetime import datetime
from fractions import Fraction

NS = 1_000_000_000
UNITS: dict[str, int] = {
    "ns": 1,
    "us": 1000,
    "µs": 1000,
    "μs": 1000,
    "ms": 10**6,
    "s": NS,
    "m": 60 * NS,
    "h": 3600 * NS,
    "d": 86400 * NS,
}

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})"
    r"(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?"
    r"\s*(?:([Zz])|([+-])(\d{2}):?(\d{2}))?"
)
_DATETIME_FORMATS = (
    "%m/%d/%Y, %I:%M:%S %p",
    "%m/%d/%Y %I:%M:%S %p",
    "%m/%d/%Y, %H:%M:%S",
    "%m/%d/%Y %H:%M:%S",
    "%m/%d/%Y",
)
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h|d)")


def parse_time(text: str) -> int | None:
    """Unix ns of an RFC 3339 / ISO 8601 time (no zone: UTC), or of Mizu's
    `1/2/2006, 3:04:05 PM` layout (UTC); None if it is neither."""
    text = text.strip()
    m = _RFC3339.fullmatch(text)
    if m:
        y, mo, d, h, mi, s, frac, z, sign, oh, om = m.groups()
        try:
            datetime(int(y), int(mo), int(d), int(h or 0), int(mi or 0), int(s or 0))
        except ValueError:
            return None
        seconds = calendar.timegm(
            (int(y), int(mo), int(d), int(h or 0), int(mi or 0), int(s or 0), 0, 0, 0)
        )
        if sign:
            offset = int(oh) * 3600 + int(om) * 60
            seconds -= offset if sign == "+" else -offset
        return seconds * NS + (int(frac.ljust(9, "0")) if frac else 0)
    for layout in _DATETIME_FORMATS:
        try:
            parsed = datetime.strptime(text, layout)
        except ValueError:
            continue
        return calendar.timegm(parsed.timetuple()) * NS
    return None


def parse_duration(text: str) -> int | None:
    """Nanoseconds of a Go-style duration ("300ms", "-1.5h", "1h30m"; also "d" for
    days), None if malformed."""
    text = text.strip()
    sign = 1
    if text and text[0] in "+-":
        sign = -1 if text[0] == "-" else 1
        text = text[1:]
    if text == "0":
        return 0
    if not text:
        return None
    total = Fraction(0)
    pos = 0
    while pos < len(text):
        m = _DURATION_PART.match(text, pos)
        if not m:
            return None
        total += Fraction(m.group(1)) * UNITS[m.group(2)]
        pos = m.end()
    return sign * round(total)
