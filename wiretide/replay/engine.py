"""Sending planned requests on their schedule (the IO shell around plan and pacing).

Lanes keep per-connection order (each sends its next call when the previous one is
answered); `concurrency` bounds the requests in flight across lanes, and a bounded
backlog keeps an endless `--loop` from queueing without end. Every copy of every call
becomes one `Exchange`, handed to `on_exchange` as soon as it is answered or failed.
"""

from __future__ import annotations

import asyncio
import functools
import signal
import ssl
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from schemas.records import ApiCall
from wiretide.progress import Progress
from wiretide.replay.h1 import H1Connection, ProtocolError
from wiretide.replay.h2client import H2Connection, NotProcessed
from wiretide.replay.model import Exchange, ReplayedResponse, SentRequest
from wiretide.replay.pacing import Pacing, schedule
from wiretide.replay.plan import Skip
from wiretide.replay.resp import RespConnection
from wiretide.replay.stats import LATE_S, Stats
from wiretide.replay.targets import DEFAULT_PORTS

OnExchange = Callable[[Exchange], None]


@dataclass(frozen=True, slots=True)
class SendOptions:
    concurrency: int = 32
    timeout_s: float = 30.0
    duration_s: float | None = None
    insecure: bool = False  # https targets: skip certificate checks
    progress: bool = False


_Key = tuple[str, str, int, str]  # scheme, host, port, http version


@functools.lru_cache(maxsize=1024)
def _key(origin: str, version: str) -> _Key:
    url = urlsplit(origin)
    port = url.port or DEFAULT_PORTS.get(url.scheme, 80)
    return (url.scheme, url.hostname or "", port, version)


class Sender:
    """Connections by target and HTTP version: HTTP/1.1 (and Redis) a pool of kept-alive
    ones, one request each at a time; HTTP/2 one multiplexed connection."""

    def __init__(self, opts: SendOptions) -> None:
        self.opts = opts
        self.idle: dict[_Key, deque[H1Connection | RespConnection]] = {}
        self.h2: dict[_Key, H2Connection] = {}
        self.h2_lock = asyncio.Lock()
        self._tls: dict[str, ssl.SSLContext] = {}

    def tls(self, alpn: str) -> ssl.SSLContext:
        if alpn not in self._tls:
            ctx = ssl.create_default_context()
            if self.opts.insecure:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            ctx.set_alpn_protocols([alpn])
            self._tls[alpn] = ctx
        return self._tls[alpn]

    async def send(self, req: SentRequest) -> ReplayedResponse:
        end = req.url.find("/", req.url.find("//") + 2)
        key = _key(req.url if end < 0 else req.url[:end], req.http_version)
        send = self._send_h2 if req.http_version == "2" else self._send_h1
        async with asyncio.timeout(self.opts.timeout_s):  # no task per request (wait_for's)
            return await send(key, req)

    async def _send_h1(self, key: _Key, req: SentRequest) -> ReplayedResponse:
        idle = self.idle.setdefault(key, deque())
        for _ in range(2):  # once more on a fresh connection if a kept-alive one was stale
            conn = idle.pop() if idle else await self._open_h1(key)
            reused = conn.used
            try:
                resp = await conn.request(req)
            except (ConnectionError, asyncio.IncompleteReadError) as ex:
                conn.close()
                if reused:
                    continue
                raise ConnectionResetError(str(ex) or "connection reset") from ex
            except BaseException:
                conn.close()  # a timeout or protocol error leaves it mid-answer
                raise
            if conn.reusable:
                idle.append(conn)
            return resp
        raise ConnectionResetError("the server closed the connection")

    async def _open_h1(self, key: _Key) -> H1Connection | RespConnection:
        scheme, host, port, _ = key
        if scheme == "redis":
            return await RespConnection.open(host, port)
        return await H1Connection.open(
            host, port, self.tls("http/1.1") if scheme == "https" else None
        )

    async def _send_h2(self, key: _Key, req: SentRequest) -> ReplayedResponse:
        for _ in range(3):  # again on a new connection if the server did not take it
            async with self.h2_lock:
                conn = self.h2.get(key)
                if conn is None or not conn.reusable:
                    scheme, host, port, _ = key
                    tls = self.tls("h2") if scheme == "https" else None
                    conn = self.h2[key] = await H2Connection.open(host, port, tls)
            try:
                return await conn.request(req)
            except NotProcessed as ex:
                last = ex
        raise last

    def close(self) -> None:
        for pool in self.idle.values():
            for conn in pool:
                conn.close()
        for h2conn in self.h2.values():
            h2conn.close()


async def exchange(
    sender: Sender, run_id: str, call: ApiCall, copy: int, req: SentRequest
) -> Exchange:
    sent_ns = time.time_ns()
    try:
        resp = await sender.send(req)
    except TimeoutError:
        return Exchange(run_id, call, copy, req, None, "timeout", sent_ns)
    except (OSError, ProtocolError, asyncio.IncompleteReadError) as ex:
        return Exchange(run_id, call, copy, req, None, _error_text(ex), sent_ns)
    return Exchange(run_id, call, copy, req, resp, "", sent_ns)


def _error_text(ex: BaseException) -> str:
    if isinstance(ex, ConnectionRefusedError):
        return "connection refused"
    if isinstance(ex, ssl.SSLCertVerificationError):
        return f"TLS: {ex.verify_message or 'certificate not trusted'} (--insecure skips the check)"
    if isinstance(ex, ssl.SSLError):
        return f"TLS: {ex.reason or ex}"
    if isinstance(ex, OSError) and ex.strerror:
        return ex.strerror.lower()
    return str(ex) or type(ex).__name__


async def send_all(
    run_id: str,
    calls: Sequence[ApiCall],
    requests: Sequence[SentRequest | Skip],
    pacing: Pacing,
    on_exchange: OnExchange,
    opts: SendOptions,
) -> tuple[Stats, float]:
    """Send every sendable request on its schedule; (stats, seconds taken)."""
    stats = Stats()
    for req in requests:
        if isinstance(req, Skip):
            stats.skip(req)
    if all(isinstance(r, Skip) for r in requests):
        return stats, 0.0
    run = _Run(run_id, calls, requests, on_exchange, opts, stats)
    loop = asyncio.get_running_loop()
    start = loop.time()
    ticker = asyncio.create_task(run.tick(start)) if opts.progress else None
    try:
        loop.add_signal_handler(signal.SIGINT, run.stopping.set)
    except (NotImplementedError, RuntimeError, ValueError):
        pass  # not the main thread: Ctrl-C stays KeyboardInterrupt
    try:
        await run.dispatch(pacing, start)
    finally:
        _remove_handler(loop)
        if ticker is not None:
            ticker.cancel()
        run.progress.done()
        run.sender.close()
    return stats, loop.time() - start


def _now() -> float:
    return asyncio.get_running_loop().time()


def _remove_handler(loop: asyncio.AbstractEventLoop) -> None:
    try:
        loop.remove_signal_handler(signal.SIGINT)
    except (NotImplementedError, RuntimeError, ValueError):
        pass


class _Run:
    def __init__(
        self,
        run_id: str,
        calls: Sequence[ApiCall],
        requests: Sequence[SentRequest | Skip],
        on_exchange: OnExchange,
        opts: SendOptions,
        stats: Stats,
    ) -> None:
        self.run_id, self.calls, self.requests = run_id, calls, requests
        self.on_exchange, self.opts, self.stats = on_exchange, opts, stats
        self.sender = Sender(opts)
        self.inflight = asyncio.Semaphore(opts.concurrency)
        self.backlog = asyncio.Semaphore(opts.concurrency * 4)
        self.stopping = asyncio.Event()
        self.lanes: dict[tuple[str, int], asyncio.Queue] = {}
        self.tasks: list[asyncio.Task] = []
        self.progress = Progress(enabled=opts.progress)
        self.start = 0.0
        self.timed = False

    async def dispatch(self, pacing: Pacing, start: float) -> None:
        loop = asyncio.get_running_loop()
        self.start, self.timed = start, pacing.timed
        flows = [c.flow_id or c.call_id for c in self.calls]
        ts = [c.ts_ns for c in self.calls]
        duration = self.opts.duration_s
        try:
            for slot in schedule(ts, flows, pacing):
                if isinstance(self.requests[slot.index], Skip):
                    continue
                now = loop.time() - start
                if self.stopping.is_set() or (duration is not None and now >= duration):
                    break
                if duration is not None and slot.due_s >= duration:
                    break  # slots come in due order: the rest are later still
                if slot.due_s > now and await self._stopped_within(slot.due_s - now):
                    break
                await self.backlog.acquire()
                self._lane(slot.lane).put_nowait(slot)
        finally:
            for queue in self.lanes.values():
                queue.put_nowait(None)
            await asyncio.gather(*self.tasks, return_exceptions=True)

    async def _stopped_within(self, seconds: float) -> bool:
        try:
            await asyncio.wait_for(self.stopping.wait(), max(seconds, 0.0))
        except TimeoutError:
            return False
        return True

    def _lane(self, key: tuple[str, int]) -> asyncio.Queue:
        queue = self.lanes.get(key)
        if queue is None:
            queue = self.lanes[key] = asyncio.Queue()
            self.tasks.append(asyncio.create_task(self._drain(queue)))
        return queue

    async def _drain(self, queue: asyncio.Queue) -> None:
        while (slot := await queue.get()) is not None:
            req = self.requests[slot.index]
            assert isinstance(req, SentRequest)
            try:
                async with self.inflight:
                    if self.timed and _now() - self.start - slot.due_s > LATE_S:
                        self.stats.late += 1
                    call = self.calls[slot.index]
                    ex = await exchange(self.sender, self.run_id, call, slot.copy, req)
            finally:
                self.backlog.release()
            self.stats.add(ex)
            self.on_exchange(ex)

    async def tick(self, start: float) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self.progress.show(self.stats.progress_line(loop.time() - start), force=True)
            await asyncio.sleep(0.5)
