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
acknowledgement (one per group commit of events, one per API write).

On a Redis Cluster each primary has its own stream: the fence and the wait go to every primary
written, the fence key being in one of that primary's slots (:func:`fence_key`).

When the replicas do not acknowledge in time, :class:`~webhooks.errors.ReplicationTimeout`: the
write stays on the primary (Redis has no undo), so the client's retry of the same request (the
same event id) finds it and is answered once it is acknowledged.
"""

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast

import redis
from redis.asyncio import Redis
from redis.crc import key_slot

from webhooks import keys
from webhooks.connection import is_cluster
from webhooks.errors import ReplicationTimeout, StorageError

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


@functools.cache
def fence_key(slot: int) -> str:
    """A fence key in hash slot ``slot`` (found by trying tags: ~16,000 tries, once per slot)."""
    tag = 0
    while key_slot(f"{FENCE}:{{{tag}}}".encode()) != slot:
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
    async with r.pipeline(transaction=False) as pipe:
        pipe.set(FENCE, "1")
        pipe.execute_command(*policy.command())
        try:
            _, reply = await pipe.execute()
        except redis.ResponseError as exc:
            raise _problem(exc) from None
    policy.check(reply)


async def _acknowledge_cluster(r: "Redis", policy: AckPolicy, tenant_ids: Iterable[str] | None) -> None:
    cluster = cast(Any, r)
    slots: dict[str, tuple[Any, int]] = {}  # node name -> (node, a slot of it)
    if tenant_ids is None:
        for slot, nodes in sorted(cluster.nodes_manager.slots_cache.items()):
            if nodes:
                slots.setdefault(nodes[0].name, (nodes[0], slot))
    else:
        for tenant_id in set(tenant_ids):
            slot = key_slot(keys.tenant_base(tenant_id).encode())
            node = cluster.nodes_manager.get_node_from_slot(slot)
            slots.setdefault(node.name, (node, slot))
    if not slots:
        return
    pipe = cluster.pipeline()
    for node, slot in slots.values():
        pipe.set(fence_key(slot), "1")
        pipe.execute_command(*policy.command(), target_nodes=node)
    try:
        replies = await pipe.execute()
    except redis.ResponseError as exc:
        raise _problem(exc) from None
    for reply in replies[1::2]:
        policy.check(reply)


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
    if policy.replicas and not is_cluster(r):
        connected = int(r.info("replication").get("connected_slaves", 0))
        if connected < policy.replicas:
            warnings.append(
                f"WEBHOOKS_ACK_REPLICAS={policy.replicas} but the primary has {connected} connected "
                "replica(s): every write is answered 503 until enough replicas are back"
            )
    return refusals, warnings
