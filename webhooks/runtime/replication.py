"""Acknowledged writes (``WEBHOOKS_ACK_REPLICAS``, ``_ACK_TIMEOUT_MS``, ``_ACK_FSYNC``): a write is
answered as done only once that many replicas (and with fsync, the primary's AOF) hold it.

Redis' ``WAIT numreplicas timeout`` and ``WAITAOF numlocal numreplicas timeout`` count what
acknowledged the replication offset of *the calling connection's own last write*. The platform
writes through pooled connections (on a Redis Cluster, one pool per primary), so the connection
that waits is not necessarily the one that wrote, and a retry that finds its event already stored
writes nothing at all. :func:`acknowledge` therefore sends, in one pipeline on one connection, a
*fence* (``SET`` of a small key) and then the wait. A primary's replication stream is one ordered
stream: a replica that acknowledged the fence holds every write the primary applied before it,
that is every write whose reply the caller has already seen, whichever connection carried it,
and the earlier write of an event a retry finds stored. The fence costs one small write per
acknowledgement (one per group commit of events, one per API write). The pair is never retried on
a broken connection (other commands are): after a failover the retry would reach the promoted
primary, whose replicas vouch for its own writes, not for one that died with the old primary.

On a Redis Cluster each primary has its own stream: the fence and the wait go to every primary
written: for events, to each tenant's primary (the fence is a key of the tenant's slot,
:func:`webhooks.keys.ack_fence`); for the other writes, whose keys span slots, to every primary
(the fence key is in one of its slots, :func:`fence_key`). Cluster fences expire after a minute.
Each fence and wait go on one connection of that node and are not retried elsewhere: after a
failover the cluster client's retry would send the fence to the promoted replica and the wait
(which has no key) to any node, acknowledging a write that died with the old primary; a
connection error is the request's failure (503), and the client's retry writes the event again.

When the replicas do not acknowledge in time, :class:`~webhooks.errors.ReplicationTimeout`: the
write stays on the primary (Redis has no undo), so the client's retry of the same request (the
same event id) finds it and is answered once it is acknowledged.
"""

import asyncio
import functools
from binascii import crc_hqx
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast

import redis
from redis.asyncio import Redis
from redis.asyncio.cluster import PipelineCommand
from redis.crc import REDIS_CLUSTER_HASH_SLOTS as SLOTS
from redis.crc import key_slot

from webhooks import keys
from webhooks.errors import ReplicationTimeout, StorageError
from webhooks.runtime.connection import is_cluster

FENCE = keys.PREFIX + "ack"  # the fence on a plain Redis (or through Sentinel)
WAITAOF_NEEDS = "Redis 7.2 or later, or Valkey 7.2 or later"


@dataclass(frozen=True, slots=True)
class AckPolicy:
    """What a write waits for before it is answered (all off by default)."""

    replicas: int = 0
    timeout_ms: int = 1000
    fsync: bool = False

    @property
    def enabled(self) -> bool:
        return self.replicas > 0 or self.fsync

    def command(self) -> tuple[str | int, ...]:
        if self.fsync:
            return ("WAITAOF", 1, self.replicas, self.timeout_ms)
        return ("WAIT", self.replicas, self.timeout_ms)

    def describe(self) -> str:
        """One line for ``webhooks up``'s summary and the logs."""
        if not self.enabled:
            return "primary only (WEBHOOKS_ACK_REPLICAS=0: a write is answered once the primary has it)"
        parts = []
        if self.fsync:
            parts.append("the primary's AOF fsync")
        if self.replicas:
            parts.append(f"{self.replicas} replica{'s' if self.replicas != 1 else ''}")
        return f"answered after {' and '.join(parts)} acknowledged it (else 503 after {self.timeout_ms} ms)"

    def check(self, reply: Any) -> None:
        """Raise :class:`ReplicationTimeout` unless ``reply`` (of :meth:`command`) says it is done."""
        if self.fsync:
            local, replicas = int(reply[0]), int(reply[1])
            if local >= 1 and replicas >= self.replicas:
                return
            raise ReplicationTimeout(
                f"the write is on the primary but was not acknowledged within {self.timeout_ms} ms "
                f"(AOF fsync: {'done' if local else 'not done'}, replicas: {replicas} of {self.replicas}); "
                "retry the same request (the same event id), it is not written twice"
            )
        if int(reply) < self.replicas:
            raise ReplicationTimeout(
                f"the write is on the primary but only {int(reply)} of {self.replicas} replicas "
                f"acknowledged it within {self.timeout_ms} ms; retry the same request (the same event id), "
                "it is not written twice"
            )


NO_ACK = AckPolicy()  # answered once the primary has the write (the default)
# With ACK_FSYNC and ACK_REPLICAS an answer waits for a replica's fsync report, about once a second
# with appendfsync everysec (bench.ack: answers took about 1 s): a shorter timeout refuses some.
FSYNC_REPLICAS_MIN_TIMEOUT_MS = 2000


FENCE_TTL_MS = 60_000  # a cluster fence expires by itself: no key is left behind per slot or tenant


@functools.cache
def fence_key(slot: int) -> str:
    """A fence key in hash slot ``slot``: found by trying tags (about 16,000 CRC16s, a few ms),
    once per slot; used for one slot of each primary only."""
    tag = 0
    while crc_hqx(b"%d" % tag, 0) % SLOTS != slot:
        tag += 1
    return f"{FENCE}:{{{tag}}}"


def _problem(exc: redis.ResponseError) -> Exception:
    if "unknown command" in str(exc).lower():
        return StorageError(f"WEBHOOKS_ACK_FSYNC needs WAITAOF ({WAITAOF_NEEDS}); this server has none")
    return exc


async def acknowledge(r: "Redis", policy: AckPolicy, tenant_ids: Iterable[str] | None = None) -> None:
    """Return once every write the primary applied before this call is acknowledged as ``policy``
    asks (at once when it asks nothing); raise :class:`ReplicationTimeout` when it was not in time.

    On a Redis Cluster, ``tenant_ids`` names whose primaries were written (None: every primary).
    """
    if not policy.enabled:
        return
    if is_cluster(r):
        await _acknowledge_cluster(r, policy, tenant_ids)
        return
    policy.check(await _fence_and_wait_once(r, policy))


async def _fence_and_wait_once(r: "Redis", policy: AckPolicy) -> Any:
    """The fence and the wait on one pooled connection, never retried: a retry after the
    connection broke (the primary died) could reach a newly promoted primary, whose replicas would
    vouch for its own writes, not for the one that died with the old primary. A broken connection
    raises instead, answered 503: the client's retry writes the event again where it now goes."""
    pool = r.connection_pool
    conn = await cast(Any, pool).get_connection()  # redis-py leaves get_connection untyped
    try:
        await conn.send_packed_command(conn.pack_commands([("SET", FENCE, "1"), policy.command()]))
        await conn.read_response()  # the fence's OK
        return await conn.read_response()
    except redis.ResponseError as exc:
        await conn.disconnect()  # a reply may be left unread on it
        raise _problem(exc) from None
    except BaseException:
        await conn.disconnect()
        raise
    finally:
        await pool.release(conn)


async def _acknowledge_cluster(r: "Redis", policy: AckPolicy, tenant_ids: Iterable[str] | None) -> None:
    cluster = cast(Any, r)
    fences: dict[str, tuple[Any, str]] = {}  # node name -> (node, a fence key of its slots)
    if tenant_ids is None:
        for node, slot in _a_slot_of_each_primary(cluster):
            fences[node.name] = (node, fence_key(slot))
    else:
        for tenant_id in tenant_ids:
            slot = key_slot(keys.tenant_base(tenant_id).encode())
            node = cluster.nodes_manager.get_node_from_slot(slot)
            fences.setdefault(node.name, (node, keys.ack_fence(tenant_id)))
    if not fences:
        return
    try:
        replies = await asyncio.gather(*(_fence_and_wait(node, key, policy) for node, key in fences.values()))
    except redis.ResponseError as exc:
        raise _problem(exc) from None
    for reply in replies:
        policy.check(reply)


async def _fence_and_wait(node: Any, key: str, policy: AckPolicy) -> Any:
    """The fence and the wait on one connection of ``node``, never retried elsewhere: the wait
    vouches only for the writes of the node it runs on. A cluster client's retry (after a
    connection error, when the primary died) would send the fence to the promoted replica and the
    wait, which has no key, to whichever node: a 202 for a write that died with the old primary."""
    fence = PipelineCommand(0, "SET", key, "1", "PX", FENCE_TTL_MS)
    wait = PipelineCommand(1, *policy.command())
    await node.execute_pipeline([fence, wait])
    for cmd in (fence, wait):
        if isinstance(cmd.result, Exception):
            raise cmd.result
    return wait.result


_primary_slot: dict[str, int] = {}  # node name -> a slot it served when last looked


def _a_slot_of_each_primary(cluster: Any) -> list[tuple[Any, int]]:
    """(node, one of its slots) for every primary that serves slots, from the client's slot map;
    remembered until that slot moves (the map is only scanned again then)."""
    owners = cluster.nodes_manager.slots_cache
    primaries = {n.name: n for n in cluster.get_primaries()}

    def serves(name: str, slot: int) -> bool:
        return bool(owners.get(slot)) and owners[slot][0].name == name

    found = {name: slot for name, slot in _primary_slot.items() if name in primaries and serves(name, slot)}
    if len(found) < len(primaries):
        for slot, nodes in owners.items():
            if nodes and nodes[0].name in primaries:
                found.setdefault(nodes[0].name, slot)
        _primary_slot.clear()
        _primary_slot.update(found)
    return [(primaries[name], slot) for name, slot in found.items()]


def startup_problems(r: "redis.Redis", policy: AckPolicy) -> tuple[list[str], list[str]]:
    """What the server lacks for ``policy``: (refusals, warnings). A refusal stops the process at
    start (``WEBHOOKS_ACK_FSYNC`` on a server without ``WAITAOF`` or without AOF); a warning
    does not (fewer replicas connected than ``WEBHOOKS_ACK_REPLICAS`` now: writes answer 503
    until they are back)."""
    refusals: list[str] = []
    warnings: list[str] = []
    if not policy.enabled:
        return refusals, warnings
    info = r.info("server")
    if policy.fsync:
        try:  # asks for nothing: answers at once where the command exists
            cast(Any, r).execute_command("WAITAOF", 0, 0, 1)
            known = True
        except redis.ResponseError as exc:
            known = "unknown command" not in str(exc).lower()
        if not known:
            server = (
                f"valkey {info['valkey_version']}"
                if "valkey_version" in info
                else f"redis {info.get('redis_version', '?')}"
            )
            refusals.append(f"WEBHOOKS_ACK_FSYNC needs WAITAOF: {WAITAOF_NEEDS}; this server is {server}")
        elif not is_cluster(r) and str(r.config_get("appendonly").get("appendonly")) != "yes":
            refusals.append("WEBHOOKS_ACK_FSYNC needs the primary's AOF on (appendonly yes)")
    if policy.fsync and policy.replicas and policy.timeout_ms < FSYNC_REPLICAS_MIN_TIMEOUT_MS:
        warnings.append(
            f"WEBHOOKS_ACK_FSYNC with WEBHOOKS_ACK_REPLICAS waits for the replicas' AOF fsync, which a "
            f"replica with appendfsync everysec reports about once a second: with "
            f"WEBHOOKS_ACK_TIMEOUT_MS={policy.timeout_ms} some writes answer 503 replication_timeout; "
            f"set it to {FSYNC_REPLICAS_MIN_TIMEOUT_MS} or more"
        )
    if policy.replicas and not is_cluster(r):
        connected = int(r.info("replication").get("connected_slaves", 0))
        if connected < policy.replicas:
            warnings.append(
                f"WEBHOOKS_ACK_REPLICAS={policy.replicas} but the primary has {connected} connected "
                "replica(s): every write is answered 503 until enough replicas are back"
            )
    return refusals, warnings
