"""Just enough ELF64 reading for uprobes: symbols, their file offsets and their bytes."""

from __future__ import annotations

import mmap
import os
import re
import struct
from dataclasses import dataclass
from functools import lru_cache

_SHT_SYMTAB, _SHT_DYNSYM = 2, 11
_STT_FUNC = 2
_PT_LOAD = 1


class NotElfError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Symbol:
    name: str
    value: int  # virtual address
    size: int
    file_offset: int  # where its bytes are in the file (-1 when not in a loaded segment)


@dataclass(frozen=True, slots=True)
class _Segment:
    vaddr: int
    offset: int
    filesz: int


def _read_elf_header(data: bytes) -> tuple[int, int, int, int, int, int, int]:
    if data[:4] != b"\x7fELF":
        raise NotElfError("not an ELF file")
    if data[4] != 2 or data[5] != 1:
        raise NotElfError("only little-endian ELF64 is supported")
    (phoff, shoff) = struct.unpack_from("<QQ", data, 0x20)
    (phentsize, phnum, shentsize, shnum, shstrndx) = struct.unpack_from("<HHHHH", data, 0x36)
    return phoff, shoff, phentsize, phnum, shentsize, shnum, shstrndx


def function_symbols(path: str, wanted: frozenset[str] | None = None) -> dict[str, Symbol]:
    """Function symbols of an ELF64 file (.symtab and .dynsym), optionally only `wanted`."""
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        return _function_symbols(data, wanted)


def _function_symbols(data: bytes | mmap.mmap, wanted: frozenset[str] | None) -> dict[str, Symbol]:
    phoff, shoff, phentsize, phnum, shentsize, shnum, _ = _read_elf_header(data)
    segments = []
    for i in range(phnum):
        p_type, _flags, p_offset, p_vaddr, _pa, p_filesz = struct.unpack_from(
            "<IIQQQQ", data, phoff + i * phentsize
        )
        if p_type == _PT_LOAD:
            segments.append(_Segment(p_vaddr, p_offset, p_filesz))
    sections = [
        struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)
    ]
    found: dict[str, Symbol] = {}
    wanted_bytes = {w.encode() for w in wanted} if wanted is not None else None
    for sh in sections:
        sh_type, sh_offset, sh_size, sh_link, sh_entsize = sh[1], sh[4], sh[5], sh[6], sh[9]
        if sh_type not in (_SHT_SYMTAB, _SHT_DYNSYM) or not sh_entsize:
            continue
        strtab_off = sections[sh_link][4]
        for off in range(sh_offset, sh_offset + sh_size, sh_entsize):
            st_name, st_info, _other, st_shndx, st_value, st_size = struct.unpack_from(
                "<IBBHQQ", data, off
            )
            if st_info & 0xF != _STT_FUNC or st_shndx == 0 or not st_value:
                continue
            end = data.find(b"\0", strtab_off + st_name)
            raw = data[strtab_off + st_name : end]
            if wanted_bytes is not None and raw not in wanted_bytes:
                continue
            name = raw.decode(errors="replace")
            if name in found:
                continue
            found[name] = Symbol(name, st_value, st_size, _file_offset(segments, st_value))
    return found


def _file_offset(segments: list[_Segment], vaddr: int) -> int:
    for seg in segments:
        if seg.vaddr <= vaddr < seg.vaddr + seg.filesz:
            return vaddr - seg.vaddr + seg.offset
    return -1


GO_TLS_WRITE = "crypto/tls.(*Conn).Write"
GO_TLS_READ = "crypto/tls.(*Conn).Read"


@lru_cache(maxsize=256)
def go_tls_functions(path: str, _identity: tuple[int, int, int]) -> dict[str, Symbol]:
    """crypto/tls.(*Conn).Write/Read in a Go binary, or {} (cached per file identity)."""
    return _functions_if_present(path, b"crypto/tls.(*Conn).Write", (GO_TLS_WRITE, GO_TLS_READ))


def _functions_if_present(path: str, marker: bytes, names: tuple[str, ...]) -> dict[str, Symbol]:
    """`names` among the file's function symbols, read only when `marker` occurs in it."""
    try:
        with open(path, "rb") as f:
            if not os.fstat(f.fileno()).st_size:
                return {}
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
                if data[:4] != b"\x7fELF" or data.find(marker) < 0:
                    return {}
                return _function_symbols(data, frozenset(names))
    except (OSError, NotElfError, struct.error, ValueError, IndexError):
        return {}


@lru_cache(maxsize=256)
def static_openssl_functions(
    path: str, _identity: tuple[int, int, int], names: tuple[str, ...]
) -> dict[str, Symbol]:
    """OpenSSL/BoringSSL functions linked into an executable (Node.js, Envoy, ...)."""
    return _functions_if_present(path, b"SSL_write", names)


def ret_offsets(path: str, symbol: Symbol) -> list[int]:
    """Offsets (from the symbol's start) of every RET instruction in an x86-64 function."""
    import capstone

    with open(path, "rb") as f:
        f.seek(symbol.file_offset)
        code = f.read(symbol.size)
    md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    md.skipdata = True  # Go pads functions with INT3; keep decoding past oddities
    return [insn.address for insn in md.disasm(code, 0) if insn.mnemonic in ("ret", "retq")]


_BUILDINFO_MAGIC = b"\xff Go buildinf:"


@lru_cache(maxsize=256)
def go_version_text(path: str, _identity: tuple[int, int, int]) -> str | None:
    """`go1.26.8` from a Go binary's build info (kept by `-ldflags=-s -w` too), or None
    when it has none or uses the pre-1.18 layout (version behind pointers)."""
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            at = data.find(_BUILDINFO_MAGIC)
            if at < 0 or not data[at + 15] & 2:  # flag 2: strings inline (Go 1.18+)
                return None
            n, shift, pos = 0, 0, at + 32
            while True:  # uvarint length, then the version string
                byte = data[pos]
                n |= (byte & 0x7F) << shift
                pos += 1
                if byte < 0x80:
                    break
                shift += 7
            return bytes(data[pos : pos + min(n, 64)]).decode("ascii", "replace")
    except (OSError, ValueError, IndexError):
        return None


def go_version(path: str, identity: tuple[int, int, int]) -> tuple[int, int] | None:
    """(major, minor) of `go_version_text`."""
    m = re.match(r"go1\.(\d+)", go_version_text(path, identity) or "")
    return (1, int(m.group(1))) if m else None


@lru_cache(maxsize=512)
def find_text(path: str, _identity: tuple[int, int, int], pattern: bytes) -> str | None:
    """The first match of the regex `pattern` in a file (its group 1 when it has one), or
    None; cached per file identity."""
    try:
        with open(path, "rb") as f:
            if not os.fstat(f.fileno()).st_size:
                return None
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
                m = re.search(pattern, data)  # type: ignore[call-overload]
                if m is None:
                    return None
                found = bytes(m.group(1) if m.groups() else m.group(0))
    except (OSError, ValueError):
        return None
    return found.decode("ascii", "replace")
