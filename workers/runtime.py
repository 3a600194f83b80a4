"""Per-process state of a delivery worker: its event loop, Redis client, HTTP client and engine.

RQ jobs are plain functions; they find this state through :func:`current`,
installed once by :func:`install` before the RQ worker starts. The event loop
persists across jobs so that the HTTP connection pool does too.
"""

import asyncio
from dataclasses import dataclass
from http.cookiejar import CookieJar, DefaultCookiePolicy

import httpx
from httpx_aiohttp import AiohttpTransport

from webhooks.connection import RedisTarget, async_client
from webhooks.netguard import make_guarded_session
from webhooks.secretbox import SecretBox
from workers.engine import Engine, EngineConfig


@dataclass
class Runtime:
    loop: asyncio.AbstractEventLoop
    engine: Engine

    def close(self) -> None:
        async def _close() -> None:
            await self.engine.client.aclose()
            await self.engine.r.aclose()

        self.loop.run_until_complete(_close())
        self.loop.close()


_current: Runtime | None = None


def _no_cookies() -> CookieJar:
    """A jar that keeps nothing, so no receiver's cookie ever reaches another receiver."""
    return CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))


def build(target: RedisTarget, box: SecretBox, config: EngineConfig, *, allow_private: bool) -> Runtime:
    """A runtime on a new event loop (uvloop when available)."""
    try:
        import uvloop

        loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    except ImportError:  # pragma: no cover
        loop = asyncio.new_event_loop()

    async def _make() -> Engine:
        session = make_guarded_session(
            allow_private=allow_private, limit=config.concurrency, timeout_s=config.request_timeout_s
        )
        client = httpx.AsyncClient(
            transport=AiohttpTransport(client=session),
            follow_redirects=False,
            cookies=_no_cookies(),
            timeout=config.request_timeout_s,
        )
        return Engine(async_client(target), client, box, config)

    engine = loop.run_until_complete(_make())
    return Runtime(loop, engine)


def install(runtime: Runtime) -> None:
    global _current
    _current = runtime


def current() -> Runtime:
    if _current is None:
        raise RuntimeError("no delivery runtime in this process: start it with `webhooks worker`")
    return _current
