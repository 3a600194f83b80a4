"""A receiver that answers every POST with 200 after a fixed delay and logs who sent what, when.

It runs an aiohttp server on its own thread and event loop (cheap per request, so it is never the
bottleneck of a throughput measurement) bound to any address: the multi-host tests bind it to the
root leg of a :class:`tests.support.netns.NetnsLab`. Every request is logged as an
:class:`Arrival`: the ``webhook-id`` (the event id), the sender's IP address (which lab host sent
it) and when it arrived. A request counts once its headers are read, whether or not its answer
reaches the sender: a request in flight from a host that is cut off has been delivered, which is
how at-least-once duplicates arise.
"""

import asyncio
import threading
import time
from dataclasses import dataclass

from aiohttp import web

from tests.support.aiohttp_thread import AiohttpThread


@dataclass(frozen=True, slots=True)
class Arrival:
    webhook_id: str
    peer: str  # the sending host's IP address
    at: float  # time.time() on arrival


class PacedReceiver:
    def __init__(self, host: str, delay_s: float = 0.1) -> None:
        self.host = host
        self.delay_s = delay_s
        self.port = 0
        self.lock = threading.Lock()
        self.arrivals: list[Arrival] = []
        app = web.Application()
        app.router.add_post("/{name}", self._handle)
        self.server = AiohttpThread(app, host, name="paced-receiver")

    def url(self, path: str = "hook") -> str:
        return f"http://{self.host}:{self.port}/{path}"

    def start(self) -> "PacedReceiver":
        self.port = self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    async def _handle(self, request: web.Request) -> web.Response:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        arrival = Arrival(request.headers.get("webhook-id", ""), str(peer[0]) if peer else "", time.time())
        with self.lock:
            self.arrivals.append(arrival)
        await request.read()
        await asyncio.sleep(self.delay_s)
        return web.Response(text='{"received": true}', content_type="application/json")

    def snapshot(self) -> list[Arrival]:
        with self.lock:
            return list(self.arrivals)

    def count(self) -> int:
        with self.lock:
            return len(self.arrivals)
