"""A webhook receiver on loopback that verifies every request with the ``standardwebhooks`` package.

It runs an aiohttp server on its own thread and event loop. Per endpoint (the
path ``/<name>``) it records each verified request's ``webhook-id`` with its
arrival and answer times, so the scenario can count duplicates, check that no
two requests for the same delivery overlapped, and time re-attempts after a kill.

Behaviour, chosen to look like a real receiver and to exercise the queue:

- every request waits a random latency (so a worker always has requests in flight);
- on endpoints listed in ``fail_first``, the first request of one event in
  ``fail_every`` answers 503 (no Retry-After): a planned failure that sends the
  delivery through a retry (the due set and the scheduler), never to ``dead``.

A request counts as *received* once its body was read and its signature verified,
whatever happens to the answer: a worker killed while waiting for it has still
delivered it, which is exactly how at-least-once duplicates arise.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
import zlib
from collections import defaultdict
from dataclasses import dataclass, field

from aiohttp import web
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.faults.cluster import stable_port
from tests.support.aiohttp_thread import AiohttpThread


@dataclass
class Arrival:
    start: float
    end: float | None = None
    status: int = 200
    peer_port: int = 0


@dataclass
class ReceiverStats:
    bad_signatures: int = 0
    payload_mismatches: int = 0
    planned_failures: int = 0
    requests: int = 0


@dataclass
class VerifyingReceiver:
    latency_s: tuple[float, float] = (0.02, 0.2)
    fail_first: frozenset[str] = frozenset()
    fail_every: int = 5
    seed: int = 0
    stats: ReceiverStats = field(default_factory=ReceiverStats)

    def __post_init__(self) -> None:
        self.port = stable_port()
        self.verifiers: dict[str, Webhook] = {}
        self.lock = threading.Lock()
        # (endpoint name, webhook-id) -> every verified request answered 2xx (or left unanswered)
        self.arrivals: dict[tuple[str, str], list[Arrival]] = defaultdict(list)
        self.failed_once: set[tuple[str, str]] = set()
        self.inflight: dict[int, tuple[str, str]] = {}  # peer port -> delivery being handled
        self.rng = random.Random(self.seed)
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_post("/{name}", self._handle)
        self.server = AiohttpThread(app, "127.0.0.1", self.port)

    # -- set-up ------------------------------------------------------------------------------------

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def add_endpoint(self, name: str, secret: str) -> None:
        self.verifiers[name] = Webhook(secret)

    def start(self) -> VerifyingReceiver:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    # -- the endpoint ------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        start = time.time()
        body = await request.read()
        name = request.match_info["name"]
        headers = {k.lower(): v for k, v in request.headers.items()}
        wid = headers.get("webhook-id", "")
        peer = request.transport.get_extra_info("peername") if request.transport else None
        peer_port = int(peer[1]) if peer else 0
        verifier = self.verifiers.get(name)
        with self.lock:
            self.stats.requests += 1
        try:
            if verifier is None:
                raise WebhookVerificationError("unknown endpoint")
            payload = verifier.verify(body, headers)
        except WebhookVerificationError:
            with self.lock:
                self.stats.bad_signatures += 1
            return web.json_response({"error": "bad signature"}, status=400)
        key = (name, wid)
        if not isinstance(payload, dict) or payload.get("data", {}).get("id") != wid:
            with self.lock:
                self.stats.payload_mismatches += 1
        planned = (
            name in self.fail_first
            and self.fail_every > 0
            and zlib.crc32(wid.encode()) % self.fail_every == 0
        )
        with self.lock:
            if planned and key not in self.failed_once:
                self.failed_once.add(key)
                self.stats.planned_failures += 1
                arrival = None
            else:
                arrival = Arrival(start, peer_port=peer_port)
                self.arrivals[key].append(arrival)
            self.inflight[peer_port] = key
            delay = self.rng.uniform(*self.latency_s)
        try:
            await asyncio.sleep(delay)
        finally:
            with self.lock:
                if self.inflight.get(peer_port) == key:
                    del self.inflight[peer_port]
                if arrival is not None:
                    arrival.end = time.time()
        if arrival is None:
            return web.json_response({"error": "planned failure"}, status=503)
        return web.json_response({"received": True})

    # -- what was seen -----------------------------------------------------------------------------

    def inflight_from(self, ports: set[int]) -> list[tuple[str, str]]:
        with self.lock:
            return [key for port, key in self.inflight.items() if port in ports]

    def snapshot(self) -> dict[tuple[str, str], list[Arrival]]:
        with self.lock:
            return {k: list(v) for k, v in self.arrivals.items()}

    def received(self, name: str, wid: str) -> bool:
        with self.lock:
            return bool(self.arrivals.get((name, wid)))
