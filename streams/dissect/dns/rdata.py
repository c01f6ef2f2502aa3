"""Record data in readable form, per type: addresses, names, "pref name", SRV and SOA
fields, TXT strings; types we do not render are hex."""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable
from typing import Any

from streams.dissect.base import DissectError
from streams.dissect.dns.names import read_name

_H = struct.Struct("!H")
_HHH = struct.Struct("!HHH")
_SOA = struct.Struct("!IIIII")


def _name_in(msg: bytes, off: int, end: int) -> tuple[str, int]:
    name, after = read_name(msg, off)
    if after > end:
        raise DissectError("name runs past its record")
    return name, after


def _a(msg: bytes, off: int, end: int) -> str:
    if end - off != 4:
        raise DissectError("A record is not 4 bytes")
    return socket.inet_ntop(socket.AF_INET, msg[off:end])


def _aaaa(msg: bytes, off: int, end: int) -> str:
    if end - off != 16:
        raise DissectError("AAAA record is not 16 bytes")
    return socket.inet_ntop(socket.AF_INET6, msg[off:end])


def _name(msg: bytes, off: int, end: int) -> str:
    return _name_in(msg, off, end)[0]


def _pref_name(msg: bytes, off: int, end: int) -> str:
    if end - off < 3:
        raise DissectError("record too short")
    return f"{_H.unpack_from(msg, off)[0]} {_name_in(msg, off + 2, end)[0]}"


def _srv(msg: bytes, off: int, end: int) -> str:
    if end - off < 7:
        raise DissectError("SRV record too short")
    prio, weight, port = _HHH.unpack_from(msg, off)
    return f"{prio} {weight} {port} {_name_in(msg, off + 6, end)[0]}"


def _soa(msg: bytes, off: int, end: int) -> str:
    mname, off = _name_in(msg, off, end)
    rname, off = _name_in(msg, off, end)
    if end - off != 20:
        raise DissectError("SOA record has bad length")
    serial, refresh, retry, expire, minimum = _SOA.unpack_from(msg, off)
    return f"{mname} {rname} {serial} {refresh} {retry} {expire} {minimum}"


def _strings(msg: bytes, off: int, end: int) -> list[str]:
    out = []
    while off < end:
        n = msg[off]
        stop = off + 1 + n
        if stop > end:
            raise DissectError("character-string runs past its record")
        out.append(msg[off + 1 : stop].decode("utf-8", "backslashreplace"))
        off = stop
    return out


def _hinfo(msg: bytes, off: int, end: int) -> str:
    return " ".join(_strings(msg, off, end))


def _caa(msg: bytes, off: int, end: int) -> str:
    if end - off < 2 or off + 2 + msg[off + 1] > end:
        raise DissectError("CAA record too short")
    flags, n = msg[off], msg[off + 1]
    tag = msg[off + 2 : off + 2 + n].decode("ascii", "backslashreplace")
    value = msg[off + 2 + n : end].decode("utf-8", "backslashreplace")
    return f'{flags} {tag} "{value}"'


RENDER: dict[int, Callable[[bytes, int, int], Any]] = {
    1: _a, 28: _aaaa, 2: _name, 5: _name, 12: _name, 39: _name, 7: _name, 8: _name, 9: _name,
    15: _pref_name, 18: _pref_name, 36: _pref_name, 33: _srv, 6: _soa, 16: _strings,
    99: _strings, 13: _hinfo, 257: _caa,
}  # fmt: skip


def render(msg: bytes, rtype: int, off: int, end: int) -> Any:
    """The data of one record (`msg[off:end]`); names may point anywhere in `msg`."""
    fn = RENDER.get(rtype)
    if fn is None:
        return msg[off:end].hex()
    return fn(msg, off, end)
