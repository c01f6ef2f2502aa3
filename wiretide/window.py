"""Time windows a user names: `15m` (ago), `now`, or an RFC 3339 time; used by
`wiretide map` and the hub's GET /api/map alike."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

DEFAULT_SINCE = "15m"
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_AGO = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
# What the map's DateTime column holds (whole years, to keep the message simple).
_EPOCH, _LAST = datetime(1970, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)
TIME_HELP = "a duration ago (30s, 15m, 2h, 7d, 1w), 'now', or an RFC 3339 time (UTC if no offset)"


def parse_time(text: str, now: datetime) -> datetime:
    """`15m` (ago), `now`, or an ISO/RFC 3339 time; ValueError with one line if neither."""
    text = text.strip()
    if text == "now":
        return now
    ago = _AGO.fullmatch(text)
    if ago:
        seconds = float(ago.group(1)) * _UNITS[ago.group(2)]
        if seconds > 100 * 365 * 86400:
            raise ValueError(f"{text!r} is too long ago")
        return now - timedelta(seconds=seconds)
    try:
        at = datetime.fromisoformat(text)
        return (at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(UTC)
    except (ValueError, OverflowError):
        raise ValueError(f"expected {TIME_HELP}; got {text!r}") from None


def window(since: str, until: str | None, now: datetime | None = None) -> tuple[datetime, datetime]:
    """The [since, until) a user asked for; ValueError (one line) if it is not a window."""
    now = now or datetime.now(UTC)
    start = parse_time(since, now)
    end = parse_time(until, now) if until else now
    if not _EPOCH <= start < _LAST or not _EPOCH < end <= _LAST:
        raise ValueError(f"times must lie between {_EPOCH.year} and {_LAST.year} (UTC)")
    if end <= start:
        raise ValueError(
            f"the window ends ({end.isoformat()}) before it starts ({start.isoformat()})"
        )
    return start, end
