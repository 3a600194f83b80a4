"""Which pooled connection a worker reuses (webhooks/outbound/netguard.py, GuardedConnector._get).

aiohttp hands out the connection idle the longest; ours hands out the one released last, so a
modest rate to a host keeps one connection warm instead of cycling through every pooled one until
each idles past the keep-alive and is reopened (a TLS handshake each time).
"""

import asyncio

import aiohttp
from aiohttp import web

from webhooks.outbound.netguard import GuardedConnector


async def _reuse(concurrent: int, sequential: int) -> tuple[set[int], list[int]]:
    """``concurrent`` requests at once (one connection each), then ``sequential`` one after
    another; returns the client ports of the first and of each later request, read by the server."""
    in_flight = 0
    all_in = asyncio.Event()

    async def handle(request: web.Request) -> web.Response:
        nonlocal in_flight
        in_flight += 1
        if in_flight >= concurrent:
            all_in.set()
        await asyncio.wait_for(all_in.wait(), 5)  # the first ones wait until all are in: N connections
        peer = request.transport.get_extra_info("peername") if request.transport else None
        return web.Response(text=str(peer[1] if peer else 0))

    app = web.Application()
    app.router.add_post("/", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    url = f"http://127.0.0.1:{port}/"
    try:
        connector = GuardedConnector(allow_private=True, limit_per_host=concurrent)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def post() -> int:
                async with session.post(url, data=b"{}") as resp:
                    return int(await resp.text())

            first = set(await asyncio.gather(*(post() for _ in range(concurrent))))
            later = [await post() for _ in range(sequential)]
    finally:
        await runner.cleanup()
    return first, later


def test_one_request_at_a_time_reuses_the_connection_released_last() -> None:
    first, later = asyncio.run(_reuse(concurrent=3, sequential=6))
    assert len(first) == 3, first  # three connections in the pool
    assert len(set(later)) == 1, later  # aiohttp's own order would cycle through all three
    assert later[0] in first  # reused, not a new connection
