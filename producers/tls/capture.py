"""TlsCapture: plaintext of TLS connections (OpenSSL/BoringSSL and Go crypto/tls) as
Segments, from uprobes through a BPF ring buffer."""

from __future__ import annotations

import ctypes
import dataclasses
import os
import socket
import time
from typing import Any

from producers.ebpf.errors import ProcessNotFoundError
from producers.ebpf.support import compile_bpf, require_ebpf, tracefs_root
from producers.tls import coverage, elf, program
from producers.tls.chunks import INGRESS, SegmentMaker, TlsChunk, TlsClose
from producers.tls.sockets import resolve_fd, tuple_from_event
from producers.tls.targets import ProbeTarget, all_pids, process_targets
from schemas.coverage import MAX_PROCESSES, TlsProcess
from schemas.records import Segment

_OPENSSL_PROBES = {
    "SSL_write": "ssl_write",
    "SSL_read": "ssl_read",
    "SSL_write_ex": "ssl_write_ex",
    "SSL_read_ex": "ssl_read_ex",
    "SSL_do_handshake": "ssl_handshake",
}
_RECHECK_EVERY = 5
_GO_PROBES = {elf.GO_TLS_WRITE: "go_write", elf.GO_TLS_READ: "go_read"}


def _optional_tracepoints() -> list[str]:
    root = tracefs_root() or ""
    flags = []
    if os.path.isdir(f"{root}/events/sock/sock_send_length"):
        flags.append("-DHAVE_SOCK_LENGTH")
    if os.path.isdir(f"{root}/events/tcp/tcp_rcv_space_adjust"):
        flags.append("-DHAVE_RCV_SPACE")
    return flags


class TlsCapture:
    """Capture TLS plaintext of `pids` (None: every process that maps libssl or is a Go
    binary with crypto/tls, rescanned every `rescan_interval_s`).

    `poll()` returns Segments with source="tls" whose endpoints are the socket's and whose
    sequence numbers count plaintext bytes per direction (see producers/tls/chunks.py).
    """

    def __init__(
        self,
        pids: list[int] | None = None,
        *,
        node: str = "",
        rescan_interval_s: float = 2.0,
        ring_pages: int = 2048,
    ) -> None:
        self.pids = None if pids is None else sorted(set(pids))
        self.node = node or socket.gethostname()
        self.rescan_interval_s = rescan_interval_s
        self.ring_pages = ring_pages
        self._bpf: Any = None
        self._maker = SegmentMaker(resolve_fd, self.node)
        self._pending: list[Segment] = []
        self._attached: dict[tuple[int, int], ProbeTarget] = {}
        self._traced_pids: set[int] = set()
        self._uprobes = 0
        self._attach_errors: list[str] = []
        self._failed: dict[tuple[int, int], str] = {}  # file identity -> why not attached
        self._processes: dict[tuple[int, str], TlsProcess] = {}  # (pid, file) -> fact
        self._described: set[int] = set()
        self._event_pids: set[int] = set()  # pids chunks came from
        self._pods: dict[int, tuple[str, str]] = {}  # pid -> (namespace, pod)
        self._next_scan = 0.0
        self._scans = 0
        self._checked: dict[int, int] = {}  # pid -> scan number it was last looked at
        self._clock_offset = 0

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> None:
        if self._bpf is not None:
            return
        require_ebpf(tracing=True)
        for pid in self.pids or ():
            if not os.path.exists(f"/proc/{pid}"):
                raise ProcessNotFoundError(pid)
        self._bpf = compile_bpf(
            "the TLS capture program", program.source(self.ring_pages), _optional_tracepoints()
        )
        if self.pids is None:
            self._bpf[b"config"][ctypes.c_int(0)] = ctypes.c_uint32(1)
        self._bpf[b"ignored"][ctypes.c_uint32(os.getpid())] = ctypes.c_uint8(1)
        # bpf_ktime_get_ns() is CLOCK_MONOTONIC; segments carry Unix time
        self._clock_offset = time.time_ns() - time.monotonic_ns()
        self._bpf[b"events"].open_ring_buffer(self._on_event)
        self._scan()

    def set_pids(self, pids: list[int]) -> None:
        """Trace these processes from the next scan on (a targeted tap's pods come and
        go); only for a capture started with a list of pids."""
        if self.pids is None:
            raise ValueError("set_pids: this capture traces every process")
        self.pids = sorted(set(pids))

    def close(self) -> None:
        if self._bpf is not None:
            self._bpf.cleanup()
            self._bpf = None

    def __enter__(self) -> TlsCapture:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- data --------------------------------------------------------------------------
    def poll(self, timeout_s: float) -> list[Segment]:
        """Segments that arrived within `timeout_s` (returns early once some did)."""
        if self._bpf is None:
            raise RuntimeError("TlsCapture.poll() before start()")
        if time.monotonic() >= self._next_scan:
            self._scan()
        self._bpf.ring_buffer_poll(max(0, int(timeout_s * 1000)))
        if not self._event_pids <= self._described:
            self._describe_event_pids()
        self._pending.extend(self._maker.flush(time.time_ns()))
        out, self._pending = self._pending, []
        return out

    def stats(self) -> dict[str, Any]:
        kernel = {}
        if self._bpf is not None:
            table = self._bpf[b"stats"]
            kernel = {
                name: table[ctypes.c_int(i)].value for i, name in enumerate(program.STAT_NAMES)
            }
        m = self._maker.stats
        return {
            "processes": len(self._traced_pids),
            "files": len(self._attached),
            "uprobes": self._uprobes,
            "attach_errors": len(self._attach_errors),
            "chunks": m.chunks,
            "bytes": m.bytes,
            "closes": m.closes,
            "unresolved": m.unresolved,
            **kernel,
        }

    @property
    def attached_files(self) -> list[ProbeTarget]:
        """Files with probes on them (those with a `problem` have none)."""
        return list(self._attached.values())

    def processes(self) -> list[TlsProcess]:
        """Every process seen doing TLS: the library hooked in it (and its version), or
        the reason it was not, and its pod when known (schemas/coverage.py)."""
        pods = self._pods
        return [
            dataclasses.replace(p, namespace=pods[p.pid][0], pod=pods[p.pid][1])
            if p.pid in pods
            else p
            for p in self._processes.values()
        ]

    def set_pods(self, pods: dict[int, tuple[str, str]]) -> None:
        """pid -> (namespace, pod) of the targeted pods' processes (coverage per pod)."""
        self._pods = dict(pods)

    def _note(self, pid: int, facts: list[TlsProcess]) -> None:
        """Keep `facts` on `pid`; one with none is looked at again on a later scan (a JVM
        maps libjvm, a process loads libssl, a while after it starts)."""
        if facts:
            self._described.add(pid)
        for fact in facts:
            self._processes.pop((pid, fact.path), None)  # re-inserted as the newest
            self._processes[(pid, fact.path)] = fact
        while len(self._processes) > MAX_PROCESSES:
            del self._processes[next(iter(self._processes))]

    def _describe_event_pids(self) -> None:
        """Processes whose calls were captured through a file probed for another (a
        short-lived client may come and go between two scans)."""
        for pid in self._event_pids - self._described:
            targets = process_targets(pid)
            if targets:
                self._note(pid, coverage.hooked(pid, targets, self._failed))
            self._described.add(pid)

    @property
    def attach_errors(self) -> list[str]:
        """One line per file that could not be traced, and why."""
        return list(self._attach_errors)

    def _on_event(self, _ctx: Any, data: int, size: int) -> None:
        hdr = program.EventHeader.from_address(data)
        sock = None
        if hdr.has_tuple:
            t = hdr.tuple
            sock = tuple_from_event(t.family, t.sport, t.dport, bytes(t.saddr), bytes(t.daddr))
        ts = hdr.ts + self._clock_offset
        self._event_pids.add(hdr.pid)
        if hdr.ev == program.EV_EXIT:
            self._pending.extend(self._maker.exit(hdr.pid, ts))
            return
        if hdr.ev == program.EV_CLOSE:
            close = TlsClose(ts, hdr.pid, hdr.fd, hdr.seq, hdr.seq2, sock)
            self._pending.extend(self._maker.close(close))
            return
        n = min(hdr.len, size - program.HEADER_SIZE)
        payload = ctypes.string_at(data + program.HEADER_SIZE, n)
        mark = hdr.seq2 if hdr.dir == INGRESS else 0
        chunk = TlsChunk(ts, hdr.pid, hdr.fd, hdr.dir, hdr.seq, payload, sock, bool(hdr.late), mark)
        seg = self._maker.chunk(chunk)
        if seg is not None:
            self._pending.append(seg)
            self._pending.extend(self._maker.flush(ts))

    # -- targets -----------------------------------------------------------------------
    def _scan(self) -> None:
        """Attach to the files of new processes. Watching every process, a pid already
        looked at is looked at again only every `_RECHECK_EVERY` scans (it may load libssl
        later); its calls are captured meanwhile when it maps an already probed file."""
        self._next_scan = time.monotonic() + self.rescan_interval_s
        self._scans += 1
        me = os.getpid()
        everyone = self.pids is None
        candidates = all_pids() if everyone else (self.pids or [])
        for pid in candidates:
            if pid == me or pid in self._traced_pids:
                continue
            if everyone:
                last = self._checked.get(pid)
                if last is not None and self._scans - last < _RECHECK_EVERY:
                    continue
                self._checked[pid] = self._scans
            targets = process_targets(pid)
            if not targets:
                if pid not in self._described:
                    self._note(pid, coverage.not_hooked(pid))
                continue
            for target in targets:
                if target.identity not in self._attached:
                    self._attach(target)
            self._note(pid, coverage.hooked(pid, targets, self._failed))
            self._traced_pids.add(pid)
            self._bpf[b"traced"][ctypes.c_uint32(pid)] = ctypes.c_uint8(1)
        alive = set(candidates)
        for pid in [p for p in self._traced_pids if p not in alive]:
            self._traced_pids.discard(pid)
            del self._bpf[b"traced"][ctypes.c_uint32(pid)]
        if everyone:
            self._checked = {p: n for p, n in self._checked.items() if p in alive}
            self._described &= alive
            self._event_pids &= alive

    def _attach(self, target: ProbeTarget) -> None:
        b = self._bpf
        path = target.path.encode()
        if target.problem:
            self._attach_errors.append(f"{target.path}: {target.problem}")
            self._failed[target.identity] = target.problem
            return
        self._attached[target.identity] = target
        try:
            if target.kind == "openssl":
                for fn in target.functions:
                    probe = _OPENSSL_PROBES[fn]
                    sym = fn.encode()
                    b.attach_uprobe(name=path, sym=sym, fn_name=f"{probe}_enter".encode())
                    b.attach_uretprobe(name=path, sym=sym, fn_name=f"{probe}_exit".encode())
                    self._uprobes += 2
                return
            symbols = elf.go_tls_functions(target.path, (*target.identity, _mtime(target.path)))
            for fn in target.functions:
                probe = _GO_PROBES[fn]
                rets = elf.ret_offsets(target.path, symbols[fn])
                if not rets:
                    raise ValueError(f"no RET found in {fn}")
                sym, exit_fn = fn.encode(), f"{probe}_exit".encode()
                b.attach_uprobe(name=path, sym=sym, fn_name=f"{probe}_enter".encode())
                for off in rets:
                    b.attach_uprobe(name=path, sym=sym, sym_off=off, fn_name=exit_fn)
                self._uprobes += 1 + len(rets)
        except Exception as e:  # bcc raises bare Exception when an attach fails
            self._attach_errors.append(f"{target.path}: {e}")
            self._failed[target.identity] = f"could not attach ({e})"


def _mtime(path: str) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return 0
