"""MySQL and MariaDB client/server protocol: framing (`parser`), pairing of commands with
their answers (`stitch`), and the factory the dissect stage registers (`MYSQL`)."""

from __future__ import annotations

import re

from streams.dissect.mysql.stitch import PROTOCOL, MySqlDissector
from streams.dissect.skeleton import SkeletonFactory

__all__ = ["MYSQL", "MySqlDissector", "MySqlFactory"]

# Greeting: length (3), sequence id 0, protocol 10, a version string such as "8.0.36" or
# "5.5.5-10.11.19-MariaDB...", NUL.
_GREETING = re.compile(rb"[\s\S]{3}\x00\x0a[0-9]{1,2}\.[0-9]{1,3}\.[0-9]{1,3}[\x20-\x7e]{0,80}\x00")
_QUERY_START = re.compile(
    rb"\s*(?:SELECT|INSERT|UPDATE|DELETE|SET|SHOW|BEGIN|COMMIT|USE|CALL)\b", re.I
)


class MySqlFactory(SkeletonFactory):
    """Makes one `MySqlDissector` per flow; `probe` scores the first bytes."""

    protocol = PROTOCOL
    ports = frozenset({3306})
    dissector = MySqlDissector

    def probe(self, data: bytes) -> float:
        """1.0 for a server greeting (protocol 10 and a version string); 0.6 for a whole
        COM_QUERY packet with common SQL (a capture that began mid-connection)."""
        data = bytes(data[:4096])
        if _GREETING.match(data):
            length = int.from_bytes(data[:3], "little")
            return 1.0 if 40 <= length <= 1024 else 0.0
        if len(data) >= 6 and data[3] == 0 and data[4] == 0x03:
            length = int.from_bytes(data[:3], "little")
            if length + 4 == len(data) and _QUERY_START.match(data, 5):
                return 0.6
        return 0.0


MYSQL = MySqlFactory()
