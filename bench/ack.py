"""Ingest with and without acknowledged writes (``WEBHOOKS_ACK_REPLICAS``), issue 20.

A primary with one replica (two private redis-servers, AOF ``everysec``), one ``webhooks api``
process, one tenant with one endpoint, no workers: only acceptance is measured. For each mode,
single events (``POST /v1/events``, 64 in flight) then batches of 100 (``/v1/events/batch``, 4
in flight), closed loop, each for ``--seconds``; events/s and the p50/p99 of the answers.

    .venv/bin/python -m bench.ack [--seconds 10] [--modes 0,1,0f,1f] [--fsync] [--shapes 64x1,4x100]
                                  [--slice 2.5] [--server auto|redis|valkey] [--replica-rtt-ms 2]

``--shapes``: requests in flight x events per request (``x1``: ``POST /v1/events``).

``--replica-rtt-ms`` puts a proxy delaying each way by half that between the replica and its
primary (bench/delay_proxy.py): a replica in another zone, whose round trip each ``WAIT`` takes.

A mode ``1f`` is ``ACK_REPLICAS=1`` with ``ACK_FSYNC``, ``0f`` fsync alone; a run with fsync
uses valkey-server (``WAITAOF``; Debian's redis-server 7.0 has none) unless ``--server`` says.

With ``--slice S`` every mode's stack is started first, and each mode's load runs in slices of
``S`` seconds taken in turn (mode 1, mode 0, mode 1, ...) until each had ``--seconds``: on a
machine whose other load varies by the minute, the modes then share its good and bad minutes,
and their ratio is steadier than that of runs one after the other.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import time

import aiohttp
import httpx
import redis

from bench import common
from bench.common import Proc, RedisServer, free_port, http_ok, python_module, wait_until
from cli.embedded import find_server

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
                        raise RuntimeError(f"HTTP {resp.status}: {(await resp.text())[:300]}")
                latencies.append(time.perf_counter() - started)
                events += batch

        began = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return events / (time.monotonic() - began), latencies


def _pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] * 1000 if len(values) > 1 else 0.0


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


class Stack:
    """A primary with one replica and a ``webhooks api`` acknowledging as ``mode`` says."""

    def __init__(self, mode: Mode, replica_rtt_ms: float = 0.0) -> None:
        replicas, fsync = mode
        self.mode = f"ACK_REPLICAS={replicas}" + (" +FSYNC" if fsync else "")
        self.primary = RedisServer("primary")
        self.replica = RedisServer("replica")
        self.api: Proc | None = None
        self.proxy: Proc | None = None
        upstream = self.primary.port
        if replica_rtt_ms:  # the replica reaches its primary through a delaying proxy
            upstream = free_port()
            delay = str(replica_rtt_ms / 2)
            self.proxy = Proc(
                "delay-proxy",
                python_module("-m", "bench.delay_proxy", str(upstream), str(self.primary.port), delay),
            )
            wait_until(lambda: _listening(upstream), 10, "the delay proxy", procs=[self.proxy])
        with redis.Redis(port=self.replica.port) as r:
            r.replicaof("127.0.0.1", upstream)
            wait_until(lambda: r.info("replication").get("master_link_status") == "up", 20, "replica")
        port = free_port()
        env = {
            "WEBHOOKS_REDIS_URL": self.primary.url,
            "WEBHOOKS_ADMIN_TOKEN": ADMIN,
            "WEBHOOKS_API_PORT": str(port),
            "WEBHOOKS_ALLOW_PRIVATE_TARGETS": "true",
            "WEBHOOKS_TENANT_RATE_LIMIT_PER_S": "0",
            "WEBHOOKS_ACK_REPLICAS": str(replicas),
            "WEBHOOKS_ACK_FSYNC": "true" if fsync else "false",
            "WEBHOOKS_LOG_LEVEL": "WARNING",
        }
        self.api = Proc("api-ack", python_module("cli", "api"), env=env)
        self.url = f"http://127.0.0.1:{port}"
        wait_until(lambda: http_ok(self.url + "/readyz"), 30, "the API", procs=[self.api])
        t = httpx.post(
            self.url + "/v1/tenants", json={"name": "b"}, headers={"Authorization": f"Bearer {ADMIN}"}
        )
        self.key = t.json()["api_key"]
        httpx.post(
            self.url + "/v1/endpoints",
            json={"url": "http://127.0.0.1:9/x"},
            headers={"Authorization": f"Bearer {self.key}"},
        ).raise_for_status()

    def stop(self) -> None:
        if self.api is not None:
            self.api.stop()
        if self.proxy is not None:
            self.proxy.stop()
        self.replica.stop()
        self.primary.stop()


Mode = tuple[int, bool]  # (WEBHOOKS_ACK_REPLICAS, WEBHOOKS_ACK_FSYNC)
Shape = tuple[int, int]  # (requests in flight, events per request: 1 is POST /v1/events)
SHAPES: list[Shape] = [(64, 1), (4, 100)]


def _row(mode: str, shape: Shape, rate: float, lat: list[float]) -> str:
    concurrency, batch = shape
    label = "single" if batch == 1 else f"batch {batch}"
    shown = f"{label} ({concurrency} in flight)"
    return f"| {mode} | {shown} | {rate:,.0f} | {_pct(lat, 50):.1f} | {_pct(lat, 99):.1f} |"


def run(seconds: float, mode: Mode, shapes: list[Shape], replica_rtt_ms: float = 0.0) -> list[str]:
    stack: Stack | None = None
    rows = []
    try:
        stack = Stack(mode, replica_rtt_ms)
        for concurrency, batch in shapes:
            rate, lat = asyncio.run(_load(stack.url, stack.key, seconds, concurrency, batch))
            rows.append(_row(stack.mode, (concurrency, batch), rate, lat))
            print(rows[-1], flush=True)
    finally:
        if stack is not None:
            stack.stop()
    return rows


def run_interleaved(
    seconds: float, slice_s: float, modes: list[Mode], shapes: list[Shape], replica_rtt_ms: float = 0.0
) -> list[str]:
    """Each distinct mode once, its load in slices taken in turn (see the module's docstring)."""
    stacks: dict[Mode, Stack] = {}
    rows = []
    try:
        for mode in dict.fromkeys(modes):
            stacks[mode] = Stack(mode, replica_rtt_ms)
        for concurrency, batch in shapes:
            lats: dict[Mode, list[float]] = {m: [] for m in stacks}  # one per request of `batch` events
            spent = dict.fromkeys(stacks, 0.0)
            while min(spent.values()) < seconds:
                for m, stack in stacks.items():
                    began = time.monotonic()
                    _, lat = asyncio.run(_load(stack.url, stack.key, slice_s, concurrency, batch))
                    spent[m] += time.monotonic() - began
                    lats[m].extend(lat)
            for m, stack in stacks.items():
                rate = len(lats[m]) * batch / spent[m]
                rows.append(_row(stack.mode, (concurrency, batch), rate, lats[m]))
                print(rows[-1], flush=True)
    finally:
        for stack in stacks.values():
            stack.stop()
    return rows


def _mode(token: str, fsync: bool) -> Mode:
    """``1`` (replicas), ``1f`` (and fsync), ``0f`` (fsync alone); ``--fsync`` adds it to all."""
    return int(token.rstrip("f")), fsync or token.endswith("f")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument(
        "--modes", default="0,1", help="replicas per mode, 'f' after one adds fsync: 0,1,0f,1f"
    )
    parser.add_argument("--fsync", action="store_true", help="every mode with WEBHOOKS_ACK_FSYNC")
    parser.add_argument("--slice", type=float, default=0.0, help="interleave the modes in slices of S s")
    parser.add_argument("--shapes", default="64x1,4x100", help="requests in flight x events per request")
    parser.add_argument(
        "--server", default="auto", help="redis-server or valkey-server (cli/embedded.py: find_server)"
    )
    parser.add_argument(
        "--replica-rtt-ms", type=float, default=0.0, help="the replica's round trip to its primary"
    )
    args = parser.parse_args()
    modes = [_mode(t, args.fsync) for t in args.modes.split(",")]
    shapes = [(int(c), int(b)) for c, b in (x.split("x") for x in args.shapes.split(","))]
    if args.server != "auto" or any(fsync for _, fsync in modes):
        # WAITAOF (ACK_FSYNC) needs Redis 7.2 or Valkey: --fsync without --server runs on valkey
        common.REDIS_SERVER = find_server("valkey" if args.server == "auto" else args.server).path
    print(f"server: {common.REDIS_SERVER}")
    print("| mode | requests | events/s | p50 ms | p99 ms |\n| --- | --- | --- | --- | --- |")
    if args.slice:
        run_interleaved(args.seconds, args.slice, modes, shapes, args.replica_rtt_ms)
        return
    for mode in modes:
        run(args.seconds, mode, shapes, args.replica_rtt_ms)


if __name__ == "__main__":
    main()
