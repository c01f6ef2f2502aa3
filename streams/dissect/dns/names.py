"""DNS type, class, opcode and rcode names, and domain names in presentation form."""

from __future__ import annotations

import re
from functools import cache

from streams.dissect.base import DissectError

TYPES = {
    1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 7: "MB", 8: "MG", 9: "MR", 10: "NULL", 12: "PTR",
    13: "HINFO", 15: "MX", 16: "TXT", 17: "RP", 18: "AFSDB", 24: "SIG", 25: "KEY", 28: "AAAA",
    29: "LOC", 33: "SRV", 35: "NAPTR", 36: "KX", 37: "CERT", 39: "DNAME", 41: "OPT", 42: "APL",
    43: "DS", 44: "SSHFP", 45: "IPSECKEY", 46: "RRSIG", 47: "NSEC", 48: "DNSKEY", 49: "DHCID",
    50: "NSEC3", 51: "NSEC3PARAM", 52: "TLSA", 53: "SMIMEA", 55: "HIP", 59: "CDS",
    60: "CDNSKEY", 61: "OPENPGPKEY", 62: "CSYNC", 63: "ZONEMD", 64: "SVCB", 65: "HTTPS",
    99: "SPF", 108: "EUI48", 109: "EUI64", 249: "TKEY", 250: "TSIG", 251: "IXFR", 252: "AXFR",
    255: "ANY", 256: "URI", 257: "CAA",
}  # fmt: skip
CLASSES = {1: "IN", 3: "CH", 4: "HS", 254: "NONE", 255: "ANY"}
OPCODES = {0: "QUERY", 1: "IQUERY", 2: "STATUS", 4: "NOTIFY", 5: "UPDATE", 6: "DSO"}
RCODES = {
    0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED",
    6: "YXDOMAIN", 7: "YXRRSET", 8: "NXRRSET", 9: "NOTAUTH", 10: "NOTZONE", 11: "DSOTYPENI",
    16: "BADVERS", 17: "BADKEY", 18: "BADTIME", 19: "BADMODE", 20: "BADNAME", 21: "BADALG",
    22: "BADTRUNC", 23: "BADCOOKIE",
}  # fmt: skip
# Header flag bits, in the order dig prints them.
FLAG_BITS = (("qr", 0x8000), ("aa", 0x0400), ("tc", 0x0200), ("rd", 0x0100), ("ra", 0x0080),
             ("ad", 0x0020), ("cd", 0x0010))  # fmt: skip

MAX_NAME = 255  # wire bytes of a name (RFC 1035)
MAX_POINTERS = 64  # compression pointers followed in one name

_PLAIN = re.compile(rb"[A-Za-z0-9_*-]+")
# Labels repeat (the same zones and suffixes in every name): their text, remembered.
_LABELS: dict[bytes, str] = {}
_MAX_LABELS = 4096
# How each byte of a label is written: itself when printable, "\." "\\" "\"" escaped, else \DDD.
_BYTE_TEXT = tuple(
    ("\\" + chr(b)) if chr(b) in '.\\"' else chr(b) if 0x21 <= b <= 0x7E else f"\\{b:03d}"
    for b in range(256)
)


def type_name(qtype: int) -> str:
    return TYPES.get(qtype) or f"TYPE{qtype}"


def class_name(qclass: int) -> str:
    return CLASSES.get(qclass) or f"CLASS{qclass}"


def opcode_name(opcode: int) -> str:
    return OPCODES.get(opcode) or f"OPCODE{opcode}"


def rcode_name(rcode: int) -> str:
    return RCODES.get(rcode) or f"RCODE{rcode}"


@cache  # 16 bits of flags, a few values in practice: each call writes two of them
def flag_text(flags: int) -> str:
    return " ".join(name for name, bit in FLAG_BITS if flags & bit)


def _label_text(label: bytes) -> str:
    text = _LABELS.get(label)
    if text is None:
        if _PLAIN.fullmatch(label):
            text = label.decode("ascii")
        else:
            text = "".join([_BYTE_TEXT[b] for b in label])
        if len(_LABELS) >= _MAX_LABELS:
            _LABELS.clear()
        _LABELS[label] = text
    return text


def read_name(msg: bytes, off: int) -> tuple[str, int]:
    """The name at `off` and the offset after it. Compression pointers are followed at
    most MAX_POINTERS times and the name may not exceed 255 bytes, so a pointer loop
    ends in a `DissectError` instead of spinning."""
    labels: list[str] = []
    end = -1  # where the name ends in the message: after its first pointer, if any
    hops = 0
    size = 1
    n_msg = len(msg)
    while True:
        if off >= n_msg:
            raise DissectError("domain name runs past the end of the message")
        n = msg[off]
        if n == 0:
            off += 1
            break
        kind = n & 0xC0
        if kind == 0xC0:
            if off + 1 >= n_msg:
                raise DissectError("compression pointer runs past the end of the message")
            if end < 0:
                end = off + 2
            hops += 1
            if hops > MAX_POINTERS:
                raise DissectError("compression pointer loop")
            off = ((n & 0x3F) << 8) | msg[off + 1]
            continue
        if kind:
            raise DissectError(f"unknown label type 0x{kind:02x}")
        size += n + 1
        if size > MAX_NAME:
            raise DissectError("domain name longer than 255 bytes (or a pointer loop)")
        stop = off + 1 + n
        if stop > n_msg:
            raise DissectError("label runs past the end of the message")
        labels.append(_label_text(msg[off + 1 : stop]))
        off = stop
    return (".".join(labels) if labels else "."), (end if end >= 0 else off)
