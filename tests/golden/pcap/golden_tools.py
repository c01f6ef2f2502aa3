"""Helpers for make_golden.sh: a VLAN trunk relay and capture-file rewriters.

    golden_tools.py trunk TAP_A TAP_B TAP_WIRE
        Create three TAP devices and relay Ethernet frames between A and B (both ways).
        Every frame is also written to TAP_WIRE with VLAN tags pushed, as a trunk link
        would carry it: 802.1Q VID 10 for IPv4/ARP, 802.1ad VID 100 + 802.1Q VID 10
        (stacked) for everything else, padded to the Ethernet minimum as a NIC does.
        Capturing on TAP_WIRE gives tagged frames that went through the kernel's receive
        path and libpcap's VLAN handling. Used where the kernel has no 802.1Q support
        (ip link ... type vlan fails). Runs until killed.
    golden_tools.py pcap-be IN OUT              little-endian pcap -> big-endian pcap
    golden_tools.py pcap-modified IN OUT        pcap -> Kuznetsov "modified" pcap (a1b2cd34)
    golden_tools.py relink IN OUT LINKTYPE [--family le|be] [--af6 N] [--only 4|6] [--be]
        Ethernet pcap -> NULL/LOOP (0, 108) or raw IP (12, 14, 101, 228, 229) pcap;
        non-IP frames are dropped.
    golden_tools.py pcapng-be IN OUT            little-endian pcapng -> big-endian pcapng
    golden_tools.py pcapng-epb IN OUT spb|opb   Enhanced Packet Blocks -> Simple/obsolete
    golden_tools.py pcapng-retime IN OUT IFACE TSRESOL|none
        Re-express interface IFACE's timestamps with if_tsresol byte TSRESOL (e.g. 0x94 is
        2^-20 s), or with no if_tsresol option (the default, microseconds).

The rewriters only need to read what tcpdump and dumpcap write on a little-endian host,
and are independent of producers/pcap.py (the code under test).
"""

from __future__ import annotations

import fcntl
import os
import select
import struct
import sys

# --- VLAN trunk relay ------------------------------------------------------------------

TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000


def open_tap(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TAP | IFF_NO_PI))
    return fd


def padded(frame: bytes) -> bytes:
    """Pad to the 60-byte Ethernet minimum (64 with the FCS), as a NIC does."""
    return frame + bytes(60 - len(frame)) if len(frame) < 60 else frame


def tagged(frame: bytes) -> bytes:
    etype = frame[12:14]
    if etype in (b"\x08\x00", b"\x08\x06"):
        tags = b"\x81\x00\x00\x0a"
    else:
        tags = b"\x88\xa8\x00\x64\x81\x00\x00\x0a"
    return padded(frame[:12] + tags + frame[12:])


def trunk(a_name: str, b_name: str, w_name: str) -> None:
    a, b, w = open_tap(a_name), open_tap(b_name), open_tap(w_name)
    print("ready", flush=True)
    other = {a: b, b: a}
    while True:
        ready, _, _ = select.select([a, b], [], [])
        for fd in ready:
            frame = os.read(fd, 65536)
            try:
                os.write(w, tagged(frame))
            except OSError:
                pass  # wire tap still down
            try:
                os.write(other[fd], padded(frame))
            except OSError:
                pass


# --- classic pcap ----------------------------------------------------------------------


def read_pcap(path: str) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    data = open(path, "rb").read()
    assert data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"), "expects a LE pcap"
    recs, pos = [], 24
    while pos + 16 <= len(data):
        incl = struct.unpack_from("<I", data, pos + 8)[0]
        recs.append((data[pos : pos + 16], data[pos + 16 : pos + 16 + incl]))
        pos += 16 + incl
    return data[:24], recs


def pcap_be(src: str, dst: str) -> None:
    hdr, recs = read_pcap(src)
    out = [struct.pack(">IHHiIII", *struct.unpack("<IHHiIII", hdr))]
    for rh, pkt in recs:
        out.append(struct.pack(">IIII", *struct.unpack("<IIII", rh)) + pkt)
    open(dst, "wb").write(b"".join(out))


def pcap_modified(src: str, dst: str) -> None:
    hdr, recs = read_pcap(src)
    f = list(struct.unpack("<IHHiIII", hdr))
    f[0] = 0xA1B2CD34
    out = [struct.pack("<IHHiIII", *f)]
    for rh, pkt in recs:
        # ifindex 1, protocol = EtherType, pkt_type 0 (host), pad
        out.append(rh + struct.pack("<IHBB", 1, int.from_bytes(pkt[12:14], "big"), 0, 0) + pkt)
    open(dst, "wb").write(b"".join(out))


def relink(src: str, dst: str, linktype: int, args: list[str]) -> None:
    family = "le"
    af6 = 10
    only = None
    be_file = False
    it = iter(args)
    for a in it:
        if a == "--family":
            family = next(it)
        elif a == "--af6":
            af6 = int(next(it))
        elif a == "--only":
            only = int(next(it))
        elif a == "--be":
            be_file = True
        else:
            raise SystemExit(f"relink: unknown option {a}")
    hdr, recs = read_pcap(src)
    f = list(struct.unpack("<IHHiIII", hdr))
    f[6] = linktype
    e = ">" if be_file else "<"
    out = [struct.pack(e + "IHHiIII", *f)]
    for rh, pkt in recs:
        etype = pkt[12:14]
        if etype == b"\x08\x00":
            version, af = 4, 2
        elif etype == b"\x86\xdd":
            version, af = 6, af6
        else:
            continue
        if only is not None and version != only:
            continue
        body = pkt[14:]
        if linktype in (0, 108):
            body = af.to_bytes(4, "little" if family == "le" else "big") + body
        sec, frac, _, orig = struct.unpack("<IIII", rh)
        out.append(struct.pack(e + "IIII", sec, frac, len(body), orig - len(pkt) + len(body)))
        out.append(body)
    open(dst, "wb").write(b"".join(out))


# --- pcapng ----------------------------------------------------------------------------

SHB, IDB, OPB, SPB, EPB = 0x0A0D0D0A, 1, 2, 3, 6
# Options kept when rewriting, by block type: code -> integer width (0 = bytes as is).
OPTIONS = {
    SHB: {1: 0, 2: 0, 3: 0, 4: 0},
    IDB: {1: 0, 2: 0, 3: 0, 4: 0, 5: 0, 6: 0, 7: 0, 8: 8, 9: 0, 10: 4, 11: 0, 12: 0, 13: 0}
    | {14: 8, 15: 0, 16: 8, 17: 8},
    EPB: {1: 0, 2: 4, 4: 8, 5: 8, 6: 4},
}


def parse_options(buf: bytes) -> list[tuple[int, bytes]]:
    opts, p = [], 0
    while p + 4 <= len(buf):
        code, n = struct.unpack_from("<HH", buf, p)
        if code == 0:
            break
        opts.append((code, buf[p + 4 : p + 4 + n]))
        p += 4 + ((n + 3) & ~3)
    return opts


def pack_options(btype: int, opts: list[tuple[int, bytes]], e: str) -> bytes:
    kept = OPTIONS.get(btype, {})
    out = []
    for code, val in opts:
        if code not in kept:
            continue
        width = kept[code]
        if width and e == ">":
            val = val[::-1]
        out.append(struct.pack(e + "HH", code, len(val)) + val + b"\0" * (-len(val) % 4))
    if out:
        out.append(b"\0\0\0\0")
    return b"".join(out)


def read_pcapng(path: str) -> list[dict]:
    data = open(path, "rb").read()
    assert data[:4] == b"\x0a\x0d\x0d\x0a" and data[8:12] == b"\x4d\x3c\x2b\x1a", "LE pcapng"
    blocks, pos = [], 0
    while pos + 12 <= len(data):
        btype, blen = struct.unpack_from("<II", data, pos)
        body = data[pos + 8 : pos + blen - 4]
        b: dict = {"type": btype}
        if btype == SHB:
            b["version"] = struct.unpack_from("<HHq", body, 4)
            b["opts"] = parse_options(body[16:])
        elif btype == IDB:
            b["linktype"], b["snaplen"] = struct.unpack_from("<H2xI", body)
            b["opts"] = parse_options(body[8:])
        elif btype == EPB:
            ifid, th, tl, cap, orig = struct.unpack_from("<IIIII", body)
            b.update(ifid=ifid, ts=(th << 32) | tl, orig=orig, data=body[20 : 20 + cap])
            b["opts"] = parse_options(body[20 + cap + (-cap % 4) :])
        else:
            b["raw"] = body
        blocks.append(b)
        pos += blen
    return blocks


def write_pcapng(path: str, blocks: list[dict], e: str = "<") -> None:
    out = []
    for b in blocks:
        t = b["type"]
        if t == SHB:
            body = struct.pack(e + "IHHq", 0x1A2B3C4D, *b["version"])
        elif t == IDB:
            body = struct.pack(e + "HHI", b["linktype"], 0, b["snaplen"])
        elif t == EPB:
            d = b["data"]
            ts = b["ts"]
            body = struct.pack(e + "IIIII", b["ifid"], ts >> 32, ts & 0xFFFFFFFF, len(d), b["orig"])
            body += d + b"\0" * (-len(d) % 4)
        elif t == SPB:
            d = b["data"]
            body = struct.pack(e + "I", b["orig"]) + d + b"\0" * (-len(d) % 4)
        elif t == OPB:
            d = b["data"]
            ts = b["ts"]
            body = struct.pack(
                e + "HHIIII", b["ifid"], 0, ts >> 32, ts & 0xFFFFFFFF, len(d), b["orig"]
            )
            body += d + b"\0" * (-len(d) % 4)
        else:
            if e != "<":
                continue  # statistics, name resolution, ...: not needed, not converted
            body = b["raw"]
        if "opts" in b and t in OPTIONS:
            body += pack_options(t, b["opts"], e)
        blen = len(body) + 12
        out.append(struct.pack(e + "II", t, blen) + body + struct.pack(e + "I", blen))
    open(path, "wb").write(b"".join(out))


def pcapng_epb(src: str, dst: str, to: str) -> None:
    blocks = read_pcapng(src)
    for b in blocks:
        if b["type"] == EPB:
            b["type"] = SPB if to == "spb" else OPB
    write_pcapng(dst, blocks)


def tsresol_units(r: int) -> int:
    return 2 ** (r & 0x7F) if r & 0x80 else 10**r


def pcapng_retime(src: str, dst: str, iface: int, resol: int | None) -> None:
    """`resol` None drops the if_tsresol option: the default, microseconds."""
    blocks = read_pcapng(src)
    idbs = [b for b in blocks if b["type"] == IDB]
    idb = idbs[iface]
    old = next((v[0] for c, v in idb["opts"] if c == 9), 6)
    idb["opts"] = [(c, v) for c, v in idb["opts"] if c != 9]
    if resol is None:
        resol = 6
    else:
        idb["opts"].append((9, bytes([resol])))
    u_old, u_new = tsresol_units(old), tsresol_units(resol)
    for b in blocks:
        if b["type"] == EPB and b["ifid"] == iface:
            b["ts"] = b["ts"] * u_new // u_old
    write_pcapng(dst, blocks)


def main(argv: list[str]) -> None:
    cmd, *args = argv
    if cmd == "trunk":
        trunk(*args)
    elif cmd == "pcap-be":
        pcap_be(*args)
    elif cmd == "pcap-modified":
        pcap_modified(*args)
    elif cmd == "relink":
        relink(args[0], args[1], int(args[2]), args[3:])
    elif cmd == "pcapng-be":
        write_pcapng(args[1], read_pcapng(args[0]), ">")
    elif cmd == "pcapng-epb":
        pcapng_epb(*args)
    elif cmd == "pcapng-retime":
        pcapng_retime(
            args[0], args[1], int(args[2]), None if args[3] == "none" else int(args[3], 0)
        )
    else:
        raise SystemExit(f"unknown command {cmd}; see the docstring")


if __name__ == "__main__":
    main(sys.argv[1:])
