"""An asyncio HTTP load generator (aiohttp): closed loop (N connections back to back) and open
loop (a fixed arrival rate; latency counted from the scheduled send time, so a stalled server
is not hidden by a client that waits for it)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import aiohttp


@dataclass(frozen=True)
class Request:
    path: str
    body: bytes
    headers: dict
    key: str = ""  # what the database should hold once (provider id); "" for the bare view


@dataclass
class Result:
    latencies: list[float]
    statuses: dict[int, int]
    keys: set[str]
    elapsed: float
    errors: int = 0

    @property
    def count(self) -> int:
        return len(self.latencies)

    @property
    def rps(self) -> float:
        return self.count / self.elapsed if self.elapsed else 0.0


def _new_loop():
    try:
        import uvloop

        return uvloop.new_event_loop()
    except ImportError:  # pragma: no cover - the bench extra installs it
        return asyncio.new_event_loop()


def run(coro):
    loop = _new_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


async def _send(session, base: str, req: Request, result: Result, started: float) -> None:
    try:
        async with session.post(base + req.path, data=req.body, headers=req.headers) as response:
            await response.read()
            status = response.status
    except (aiohttp.ClientError, asyncio.TimeoutError):
        status = 0
        result.errors += 1
    result.latencies.append(time.perf_counter() - started)
    result.statuses[status] = result.statuses.get(status, 0) + 1
    if req.key and status in (200, 204):
        result.keys.add(req.key)


def _session(connections: int) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=connections, force_close=False, ttl_dns_cache=None)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30),
                                 skip_auto_headers=("User-Agent",))


async def closed_loop(base: str, requests: Iterator[Request], *, connections: int, duration: float) -> Result:
    """`connections` clients, each sending its next request when the previous one answered."""
    result = Result([], {}, set(), 0.0)
    async with _session(connections) as session:
        start = time.perf_counter()
        deadline = start + duration

        async def client():
            while time.perf_counter() < deadline:
                req = next(requests)
                await _send(session, base, req, result, time.perf_counter())

        await asyncio.gather(*(client() for _ in range(connections)))
        result.elapsed = time.perf_counter() - start
    return result


async def open_loop(base: str, requests: Iterator[Request], *, connections: int, rate: float, duration: float,
                    on_sent: Callable[[Request, float], None] | None = None) -> Result:
    """Requests at `rate` per second for `duration` seconds, at most `connections` in flight."""
    result = Result([], {}, set(), 0.0)
    total = int(rate * duration)
    async with _session(connections) as session:
        start = time.perf_counter()
        tasks = []
        for i in range(total):
            scheduled = start + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            req = next(requests)
            if on_sent is not None:
                on_sent(req, time.time())
            tasks.append(asyncio.create_task(_send(session, base, req, result, scheduled)))
        await asyncio.gather(*tasks)
        result.elapsed = time.perf_counter() - start
    return result
