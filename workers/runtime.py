"""Per-process state of a delivery worker: a persistent event loop thread and the engine on it.

RQ jobs are plain functions running in the main thread; they hand coroutines to
the loop thread through :meth:`Runtime.run`. The loop keeps running between jobs,
so requests in flight, lease heartbeats and outcome writes carry on while RQ does
its bookkeeping, and the HTTP connection pool persists. :meth:`Runtime.drain` runs one drain at a
time: an RQ job's and, while RQ's Redis is unreachable, the fallback's (:mod:`workers.fallback`).
"""

import asyncio
import threading
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from webhooks.outbound.egress import delivery_transport
from webhooks.outbound.secretbox import SecretBox
from webhooks.runtime.connection import RedisTarget, async_client
from workers.engine import DrainStats, Engine, EngineConfig

T = TypeVar("T")


@dataclass
class Runtime:
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread
    engine: Engine
    drain_lock: threading.Lock = field(default_factory=threading.Lock)

    def drain(self, budget_s: float) -> DrainStats:
        """Lease and start deliveries for up to ``budget_s`` (after any drain already running)."""
        with self.drain_lock:
            return self.run(self.engine.drain(budget_s))

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop thread and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def close(self) -> None:
        """Finish in-flight deliveries, write their outcomes, close the clients, stop the loop."""

        async def _close() -> None:
            await self.engine.shutdown()
            await self.engine.transport.aclose()
            await self.engine.r.aclose()

        self.run(_close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


_current: Runtime | None = None


def build(
    target: RedisTarget,
    box: SecretBox,
    config: EngineConfig,
    *,
    allow_private: bool,
    proxy_url: str | None = None,
) -> Runtime:
    """A runtime on a new event loop (uvloop when available) running in a daemon thread; deliveries
    go through the forward proxy ``proxy_url`` when set (:mod:`webhooks.outbound.egress`)."""
    try:
        import uvloop

        loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    except ImportError:  # pragma: no cover
        loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="delivery-loop", daemon=True)
    thread.start()

    async def _make() -> Engine:
        transport = delivery_transport(
            proxy_url,
            allow_private=allow_private,
            limit=config.concurrency,
            timeout_s=config.request_timeout_s,
        )
        return Engine(async_client(target), transport, box, config)

    engine = asyncio.run_coroutine_threadsafe(_make(), loop).result()
    return Runtime(loop, thread, engine)


def install(runtime: Runtime) -> None:
    global _current
    _current = runtime


def current() -> Runtime:
    if _current is None:
        raise RuntimeError("no delivery runtime in this process: start it with `webhooks worker`")
    return _current
