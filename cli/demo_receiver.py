"""The demo's receiver: verifies every request's signature and answers slowly, like a real one.

An aiohttp server on loopback, in a thread of its own. Each POST is checked with the
``standardwebhooks`` reference library against the endpoint's secret, recorded by its
``webhook-id`` (so duplicates are seen), held for a random 20-50 ms, then answered 200
(400 when the signature does not verify, which the platform would retry).
"""

import asyncio
import random
import socket
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field

from aiohttp import web
from standardwebhooks.webhooks import Webhook, WebhookVerificationError


@dataclass
class Tally:
    requests: int = 0
    verified: int = 0
    rejected: int = 0
    in_progress: int = 0
    arrivals: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))  # webhook-id -> times

    @property
    def unique(self) -> int:
        return len(self.arrivals)

    @property
    def duplicates(self) -> int:
        return sum(len(times) - 1 for times in self.arrivals.values())


class VerifyingReceiver:
    def __init__(self, min_delay_s: float = 0.02, max_delay_s: float = 0.05) -> None:
        self.min_delay_s, self.max_delay_s = min_delay_s, max_delay_s
        self.secret: str | None = None
        self.tally = Tally()
        self.lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="demo-receiver", daemon=True)
        self.runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def start(self) -> "VerifyingReceiver":
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(), self.loop).result(timeout=10)
        return self

    async def _serve(self) -> None:
        app = web.Application()
        app.router.add_post("/hooks", self._handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.SockSite(self.runner, self.sock).start()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            assert self.secret is not None
            Webhook(self.secret).verify(body, headers)
            ok = True
        except (WebhookVerificationError, AssertionError, ValueError):
            ok = False
        with self.lock:
            self.tally.requests += 1
            self.tally.in_progress += 1
            if ok:
                self.tally.verified += 1
                self.tally.arrivals[headers.get("webhook-id", "")].append(time.time())
            else:
                self.tally.rejected += 1
        try:
            await asyncio.sleep(random.uniform(self.min_delay_s, self.max_delay_s))
        finally:
            with self.lock:
                self.tally.in_progress -= 1
        return web.json_response({"ok": ok}, status=200 if ok else 400)

    def snapshot(self) -> Tally:
        with self.lock:
            return Tally(
                self.tally.requests,
                self.tally.verified,
                self.tally.rejected,
                self.tally.in_progress,
                {k: list(v) for k, v in self.tally.arrivals.items()},
            )

    def stop(self) -> None:
        if self.thread.is_alive():
            if self.runner is not None:
                asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(timeout=10)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=5)
        self.loop.close()
        self.sock.close()
