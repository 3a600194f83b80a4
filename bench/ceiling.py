"""The ceiling: the same signed POSTs with no queue and no durability.

One process per "worker". Each process reads a plan (JSON) on stdin, then fires its share of the
deliveries with ``httpx.AsyncClient`` over the ``httpx_aiohttp.AiohttpTransport`` (the fastest httpx
set-up measured on this machine) on uvloop, keeping up to ``concurrency`` requests in flight.
Nothing is stored and nothing is retried: this is the speed limit of "sign and POST" in Python.

The process is started ahead of time and waits on stdin, so interpreter start-up is not timed.

Plan: ``{"part": i, "parts": n, "concurrency": 256, "timeout_s": 15, "t0": <unix>,
"endpoints": [[url, secret], ...], "events": [{"id": ..., "payload": {...}, "at": <offset s or null>}]}``.
Delivery k (event-major: event e, endpoint j, k = e * len(endpoints) + j) belongs to part ``k % n``.
An event with ``at`` fires at ``t0 + at`` and gets ``payload.sent_at`` stamped when it fires.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import httpx
from httpx_aiohttp import AiohttpTransport

from bench.common import envelope, secret_bytes, signed_headers


def make_client(concurrency: int, timeout_s: float) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    return httpx.AsyncClient(transport=AiohttpTransport(limits=limits), timeout=timeout_s)


async def fire(plan: dict[str, Any]) -> dict[str, int]:
    part, parts = int(plan["part"]), int(plan["parts"])
    concurrency = int(plan.get("concurrency", 256))
    endpoints: list[tuple[str, bytes]] = [(u, secret_bytes(s)) for u, s in plan["endpoints"]]
    events: list[dict[str, Any]] = plan["events"]
    t0 = float(plan.get("t0") or time.time())
    n_ep = len(endpoints)
    sem = asyncio.Semaphore(concurrency)
    counts = {"ok": 0, "error": 0, "timeout": 0}
    tasks: set[asyncio.Task[None]] = set()

    async with make_client(concurrency, float(plan.get("timeout_s", 15))) as client:

        async def post(url: str, key: bytes, msg_id: str, body: bytes) -> None:
            try:
                resp = await client.post(url, content=body, headers=signed_headers(key, msg_id, body))
                counts["ok" if resp.is_success else "error"] += 1
            except httpx.TimeoutException:
                counts["timeout"] += 1
            except httpx.HTTPError:
                counts["error"] += 1
            finally:
                sem.release()

        loop = asyncio.get_running_loop()
        for e, event in enumerate(events):
            mine = [j for j in range(n_ep) if (e * n_ep + j) % parts == part]
            if not mine:
                continue
            at = event.get("at")
            payload = dict(event["payload"])
            if at is not None:
                delay = t0 + float(at) - time.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                payload["sent_at"] = time.time()
            body = envelope(event.get("event_type", "bench.test"), payload)
            for j in mine:
                await sem.acquire()
                url, key = endpoints[j]
                task = loop.create_task(post(url, key, event["id"], body))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        while tasks:
            await asyncio.gather(*list(tasks), return_exceptions=True)
    return counts


def main() -> None:
    plan = json.loads(sys.stdin.buffer.read())
    try:
        import uvloop

        counts = uvloop.run(fire(plan))
    except ImportError:  # pragma: no cover
        counts = asyncio.run(fire(plan))
    print(json.dumps(counts), flush=True)


if __name__ == "__main__":
    main()
