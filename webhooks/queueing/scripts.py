"""The Lua scripts of ``webhooks/queueing/lua/``: how each is assembled, registered per client, and run in
batches.

A tenant script (all but ``global.lua``) is sent as: its shebang line (flags such as
``allow-oom``), the pause check of ``_paused.lua`` (a slot move in progress,
:mod:`webhooks.queueing.reshard`), the shared functions of ``_common.lua``, then its own body. Each file's
header says what it takes (``KEYS[1]``: a tenant's key base or one global key; its ``ARGV``) and
returns. :func:`run_scripts` runs a batch pipelined on one Redis, or as concurrent calls on a
Redis Cluster; :class:`PartlyApplied` reports a batch some of whose tenants failed.
"""

import asyncio
import importlib.resources
from typing import Any, cast

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from webhooks.runtime.connection import is_cluster

GLOBAL_SCRIPTS = frozenset({"global"})  # scripts of global keys: no tenant, no pause check
# An endpoint's requests in flight across all workers: its default cap, and where a new or recovering
# endpoint starts (+1 per success). lua/_common.lua keeps copies (tests/webhooks/test_lua_keys.py).
DEFAULT_MAX_IN_FLIGHT = 1024
SLOW_START = 16


def _script_source(name: str) -> str:
    """A script after its shebang line (if any): for a tenant script first the pause check of
    ``_paused.lua`` (a slot move in progress, :mod:`webhooks.queueing.reshard`), then the shared functions
    of ``_common.lua``."""
    files = importlib.resources.files("webhooks.queueing")
    common = files.joinpath("lua/_common.lua").read_text()
    if name not in GLOBAL_SCRIPTS:
        common = files.joinpath("lua/_paused.lua").read_text() + common
    source = files.joinpath(f"lua/{name}.lua").read_text()
    if source.startswith("#!"):
        shebang, _, rest = source.partition("\n")
        return f"{shebang}\n{common}\n{rest}"
    return f"{common}\n{source}"


class Scripts:
    """The Lua scripts, registered on one client (EVALSHA with automatic reload)."""

    def __init__(self, r: "Redis") -> None:
        names = (
            "ingest",
            "lease",
            "complete",
            "tick",
            "requeue",
            "replay_chunk",
            "dead_count",
            "rate",
            "heartbeat",
            "trim",
            "auth",
            "global",
            "strict",
            "outbox",
        )
        for name in names:
            setattr(self, name, r.register_script(_script_source(name)))

    ingest: AsyncScript
    lease: AsyncScript
    complete: AsyncScript
    tick: AsyncScript
    requeue: AsyncScript
    replay_chunk: AsyncScript
    dead_count: AsyncScript
    rate: AsyncScript
    heartbeat: AsyncScript
    trim: AsyncScript
    auth: AsyncScript
    strict: AsyncScript
    outbox: AsyncScript

    @property
    def global_(self) -> AsyncScript:
        return cast(AsyncScript, getattr(self, "global"))


_scripts: dict[int, Scripts] = {}


def scripts(r: "Redis") -> Scripts:
    found = _scripts.get(id(r))
    if found is None:
        found = _scripts[id(r)] = Scripts(r)
    return found


ScriptCall = tuple[AsyncScript, list[str], list[str | int]]  # (script, keys, args)
CLUSTER_SCRIPT_CONCURRENCY = 64  # a batch's script calls in flight at once on a cluster


async def run_scripts(r: "Redis", calls: list[ScriptCall], *, errors_in_place: bool = False) -> list[Any]:
    """Run script calls, one reply per call in order: pipelined on one Redis; on a Redis Cluster
    (whose pipelines refuse EVALSHA) as concurrent calls, each routed to its key's primary.

    Neither is a transaction: on an error the other calls may have run (every script is atomic
    on its own and tolerates being run again). The first error is raised, or, with
    ``errors_in_place``, each failed call's exception is its reply (on a cluster, a primary that
    is failing over fails its tenants' calls only).
    """
    if not calls:
        return []
    if is_cluster(r):
        gate = asyncio.Semaphore(CLUSTER_SCRIPT_CONCURRENCY)

        async def one(call: ScriptCall) -> Any:
            async with gate:
                return await call[0](keys=call[1], args=call[2])

        return list(await asyncio.gather(*(one(c) for c in calls), return_exceptions=errors_in_place))
    async with r.pipeline(transaction=False) as pipe:
        for script, script_keys, args in calls:
            await script(keys=script_keys, args=args, client=pipe)
        return list(await pipe.execute(raise_on_error=not errors_in_place))


class PartlyApplied(Exception):
    """Some tenants' scripts of a batch failed (e.g. their cluster primary is away); the others'
    were applied. ``result`` is what the applied part returned."""

    def __init__(self, failed: set[str], first: BaseException, result: Any) -> None:
        super().__init__(f"{len(failed)} tenants not written: {type(first).__name__}: {first}")
        self.failed = failed
        self.result = result
