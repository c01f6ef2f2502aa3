"""PostgreSQL (frontend/backend protocol 3.0): framing (`parser`), pairing of queries,
extended-protocol batches and the startup with their answers (`stitch`), and the factory
the dissect stage registers (`POSTGRESQL`)."""

from __future__ import annotations

import struct

from streams.dissect.postgresql.parser import (
    MAX_STARTUP,
    untyped_kind,
)
from streams.dissect.postgresql.stitch import PROTOCOL, PostgresDissector
from streams.dissect.skeleton import SkeletonFactory

__all__ = ["POSTGRESQL", "PostgresDissector", "PostgresFactory"]

_HEAD = struct.Struct("!ii")


def starts_with_startup(data: bytes) -> bool:
    """Do these first client bytes begin with an untyped startup-phase packet?"""
    return len(data) >= 8 and untyped_kind(*_HEAD.unpack_from(data, 0)) is not None


class PostgresFactory(SkeletonFactory):
    """Makes one `PostgresDissector` per flow; `probe` scores the first bytes."""

    protocol = PROTOCOL
    ports = frozenset({5432})
    dissector = PostgresDissector

    def probe(self, data: bytes) -> float:
        """1.0 for a startup, SSL, GSSAPI or cancel request (length and code exact); 0.6 for
        a whole simple Query (a capture that began mid-connection); else 0.0."""
        data = bytes(data[:MAX_STARTUP])
        if starts_with_startup(data):
            return 1.0
        if len(data) >= 6 and data[0] == 0x51:  # 'Q', length, SQL, NUL
            (length,) = struct.unpack_from("!i", data, 1)
            if 6 <= length < len(data) and data[length] == 0 and b"\0" not in data[5:length]:
                return 0.6
        return 0.0


POSTGRESQL = PostgresFactory()
