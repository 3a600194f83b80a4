"""The running API's watch on the data format (webhooks/queueing/dataformat.py).

``webhooks api`` checks the format before it starts (cli/processes.py) when Redis answers then.
While it runs, this task reads the format every :data:`EVERY_S`: found newer than the code (a
newer release converted the data, or Redis was unreachable at start and holds newer data), it logs
``stopping: <why>`` and sends SIGTERM to the server process (uvicorn's, or its supervisor's with
several workers), which stops gracefully; started again, ``webhooks api`` refuses with that line.
Only the API built by ``api.main`` watches (an API built in a test process never signals it).
"""

import asyncio
import logging
import os
import signal

import redis
from redis.asyncio import Redis

from webhooks import keys
from webhooks.queueing import dataformat

log = logging.getLogger("webhooks.api")

EVERY_S = 5.0


async def watch(r: "Redis", server_pid: int, every_s: float = EVERY_S) -> None:
    while True:
        try:
            newer = dataformat.newer_than_code(await r.get(keys.DATA_FORMAT))
        except redis.RedisError:
            newer = None  # unreachable now: the next read tells
        if newer:
            log.error("stopping: %s", newer)
            os.kill(server_pid, signal.SIGTERM)
            return
        await asyncio.sleep(every_s)
