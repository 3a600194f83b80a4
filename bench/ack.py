"""Ingest with and without acknowledged writes (``WEBHOOKS_ACK_REPLICAS``), issue 20.

A primary with one replica (two private redis-servers, AOF ``everysec``), one ``webhooks api``
process, one tenant with one endpoint, no workers: only acceptance is measured. For each mode,
single events (``POST /v1/events``, 64 in flight) then batches of 100 (``/v1/events/batch``, 4
in flight), closed loop, each for ``--seconds``; events/s and the p50/p99 of the answers.

    .venv/bin/python -m bench.ack [--seconds 10] [--modes 0,1] [--fsync]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import aiohttp
import httpx
import redis

from bench.common import Proc, RedisServer, free_port, http_ok, python_module, wait_until

ADMIN = "bench-admin-token-0123456789"


async def _load(
    url: str, auth: str, seconds: float, concurrency: int, batch: int
) -> tuple[float, list[float]]:
    latencies: list[float] = []
    events = 0
    seq = 0
    deadline = time.monotonic() + seconds
    connector = aiohttp.TCPConnector(limit=concurrency)
    headers = {"Authorization": f"Bearer {auth}", "Content-Type": "application/json"}
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def worker() -> None:
            nonlocal events, seq
            while time.monotonic() < deadline:
                seq += 1
                if batch == 1:
                    body = f'{{"event_type":"order.paid","payload":{{"n":{seq}}}}}'
                    target = url + "/v1/events"
                else:
                    one = '{"event_type":"order.paid","payload":{"n":1}}'
                    body = '{"events":[' + ",".join([one] * batch) + "]}"
                    target = url + "/v1/events/batch"
                started = time.perf_counter()
                async with session.post(target, data=body) as resp:
                    await resp.read()
                    if resp.status != 202:
                        raise RuntimeError(f"HTTP {resp.status}")
                latencies.append(time.perf_counter() - started)
                events += batch

        began = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return events / (time.monotonic() - began), latencies


def _pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] * 1000 if len(values) > 1 else 0.0


def run(seconds: float, replicas: int, fsync: bool) -> list[str]:
    primary = RedisServer("primary")
    replica = RedisServer("replica")
    rows = []
    api: Proc | None = None
    try:
        with redis.Redis(port=replica.port) as r:
            r.replicaof("127.0.0.1", primary.port)
            wait_until(lambda: r.info("replication").get("master_link_status") == "up", 20, "replica")
        port = free_port()
        env = {
            "WEBHOOKS_REDIS_URL": primary.url,
            "WEBHOOKS_ADMIN_TOKEN": ADMIN,
            "WEBHOOKS_API_PORT": str(port),
            "WEBHOOKS_ALLOW_PRIVATE_TARGETS": "true",
            "WEBHOOKS_TENANT_RATE_LIMIT_PER_S": "0",
            "WEBHOOKS_ACK_REPLICAS": str(replicas),
            "WEBHOOKS_ACK_FSYNC": "true" if fsync else "false",
            "WEBHOOKS_LOG_LEVEL": "WARNING",
        }
        api = Proc("api-ack", python_module("cli", "api"), env=env)
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: http_ok(url + "/readyz"), 30, "the API", procs=[api])
        t = httpx.post(url + "/v1/tenants", json={"name": "b"}, headers={"Authorization": f"Bearer {ADMIN}"})
        key = t.json()["api_key"]
        httpx.post(
            url + "/v1/endpoints",
            json={"url": "http://127.0.0.1:9/x"},
            headers={"Authorization": f"Bearer {key}"},
        ).raise_for_status()
        mode = f"ACK_REPLICAS={replicas}" + (" +FSYNC" if fsync else "")
        for label, concurrency, batch in (("single", 64, 1), ("batch 100", 4, 100)):
            rate, lat = asyncio.run(_load(url, key, seconds, concurrency, batch))
            shape = f"{label} ({concurrency} in flight)"
            rows.append(f"| {mode} | {shape} | {rate:,.0f} | {_pct(lat, 50):.1f} | {_pct(lat, 99):.1f} |")
            print(rows[-1], flush=True)
    finally:
        if api is not None:
            api.stop()
        replica.stop()
        primary.stop()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--modes", default="0,1")
    parser.add_argument("--fsync", action="store_true")
    args = parser.parse_args()
    print("| mode | requests | events/s | p50 ms | p99 ms |\n| --- | --- | --- | --- | --- |")
    for n in (int(x) for x in args.modes.split(",")):
        run(args.seconds, n, args.fsync)


if __name__ == "__main__":
    main()
