"""Closed-loop HTTP load for the ingest scenario: ``total`` POSTs with ``concurrency`` in flight.

It uses a bare ``aiohttp.ClientSession`` on uvloop rather than httpx: on this 2-core machine the load
generator shares the CPU with the server, and httpx (even over the aiohttp transport) spends ~3x more
CPU per request, which capped the client at ~2,700 req/s against a bare FastAPI endpoint that can
answer 8,000-10,000/s; with that cap, any two servers would look alike.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp


@dataclass
class LoadResult:
    requests: int
    ok: int
    errors: int
    seconds: float
    first_error: str | None = None

    @property
    def rate(self) -> float:
        return self.ok / self.seconds if self.seconds > 0 else 0.0


async def _run(
    url: str,
    headers: dict[str, str],
    body_for: Callable[[int], bytes],
    total: int,
    concurrency: int,
    budget_s: float,
) -> LoadResult:
    ok = errors = 0
    first_error: str | None = None
    next_i = 0
    deadline = time.monotonic() + budget_s
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, headers=headers) as session:

        async def one_worker() -> None:
            nonlocal ok, errors, next_i, first_error
            while next_i < total and time.monotonic() < deadline:
                i = next_i
                next_i += 1
                try:
                    async with session.post(url, data=body_for(i)) as resp:
                        text = await resp.read()
                        if resp.status < 300:
                            ok += 1
                        else:
                            errors += 1
                            first_error = first_error or f"HTTP {resp.status}: {text[:200]!r}"
                except (aiohttp.ClientError, TimeoutError) as exc:
                    errors += 1
                    first_error = first_error or f"{type(exc).__name__}: {exc}"

        t0 = time.perf_counter()
        await asyncio.gather(*(one_worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - t0
    return LoadResult(ok + errors, ok, errors, elapsed, first_error)


def run_load(
    url: str,
    headers: dict[str, str],
    body_for: Callable[[int], bytes],
    total: int,
    concurrency: int = 64,
    budget_s: float = 60.0,
) -> LoadResult:
    try:
        import uvloop

        return uvloop.run(_run(url, headers, body_for, total, concurrency, budget_s))
    except ImportError:  # pragma: no cover
        return asyncio.run(_run(url, headers, body_for, total, concurrency, budget_s))
