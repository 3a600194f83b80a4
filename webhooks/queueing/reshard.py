"""Moving hash slots between Redis Cluster primaries while the platform runs.

Why ``redis-cli --cluster reshard`` alone is not safe here: a tenant script declares only the
tenant's key base (``KEYS[1]``, which is never a key itself) and reaches the tenant's other keys by
name. While a slot migrates, Redis sends every such script to the importing primary (the declared
key is missing on the source), where it runs against whatever part of the tenant has arrived so
far and creates keys the source still holds: the migration then stops with ``BUSYKEY`` and the
tenant stalls (measured: docs/scaling.md).

So a slot moves in steps (:func:`move_slot`), with the tenants it holds *paused*:

1. Each tenant with keys in the slot gets its ``moving`` flag (:func:`webhooks.keys.moving`) on
   the source. From then on every tenant script of those tenants answers ``PAUSED`` having
   changed nothing (``lua/_paused.lua``); the API answers 503 with ``Retry-After``, workers keep
   their outcomes and retry, the scheduler retries on its next round.
2. The target is set ``IMPORTING`` and gets the same flags (``ASKING``), then the source is set
   ``MIGRATING``: a script sent on to the target finds the flag there too. A tenant whose first
   key appeared in the slot since step 1 (created that instant) is flagged on the target then.
3. The source's flags are dropped (no script runs there any more) and the slot's keys are
   migrated in batches (``MIGRATE ... KEYS``, never ``REPLACE``) until none is left on the
   source, then every primary is told the slot's new owner (``SETSLOT NODE``).
4. The flags are removed: the tenants resume on the target.

A tenant is paused only while its own slot moves (milliseconds for a small tenant). The flags
have no expiry on purpose: if the mover dies half way, the slot's tenants stay paused rather than
run on a half-moved slot; running the same move again finishes the open slot and resumes them
(:func:`open_slots` finds it). Failure behaviour: a Redis error propagates as
``redis.RedisError``; what was moved stays moved.
"""

import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, cast

import redis
from redis.crc import key_slot

from webhooks import keys

PAUSED = "PAUSED the tenant is moving"  # how a tenant script's error starts while its slot moves
FLAG_VALUE = "slot move"
MIGRATE_BATCH = 1000  # keys per MIGRATE call
MIGRATE_TIMEOUT_MS = 60_000
_TENANT_KEY = re.compile(r"^" + re.escape(keys.PREFIX) + r"\{t:([^}]*)\}")


def _cmd(r: "redis.Redis", *args: object) -> Any:
    """A raw command (redis-py leaves ``execute_command`` untyped)."""
    return cast(Any, r).execute_command(*args)


def is_paused(exc: BaseException) -> bool:
    """Whether a Redis error is a tenant script's ``PAUSED`` answer (its slot is moving); redis-py
    puts its own words before the message of an error inside a pipeline."""
    return isinstance(exc, redis.ResponseError) and PAUSED in str(exc)


@dataclass(slots=True)
class Primary:
    id: str
    host: str
    port: int
    slots: list[int] = field(default_factory=list)
    migrating: dict[int, str] = field(default_factory=dict)  # slot -> target node id
    importing: dict[int, str] = field(default_factory=dict)  # slot -> source node id

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(slots=True)
class SlotMove:
    slot: int
    keys: int  # keys migrated
    tenants: int  # tenants paused
    paused_ms: float  # from the first flag set to the last one removed


def _slot_ranges(specs: Iterable[str], node: Primary) -> None:
    for spec in specs:
        if spec.startswith("["):  # open slot: [slot->-target] or [slot-<-source]
            slot, arrow, other = re.match(r"\[(\d+)-([<>])-(\w+)\]", spec).groups()  # type: ignore[union-attr]
            (node.migrating if arrow == ">" else node.importing)[int(slot)] = other
            continue
        lo, _, hi = spec.partition("-")
        node.slots.extend(range(int(lo), int(hi or lo) + 1))


def primaries(r: "redis.Redis") -> list[Primary]:
    """The cluster's primaries as ``r`` (a plain client of any node) sees them, with their slots."""
    out = []
    text = _cmd(r, "CLUSTER", "NODES")
    for line in (text.decode() if isinstance(text, bytes) else str(text)).splitlines():
        parts = line.split()
        if len(parts) < 8 or "master" not in parts[2].split(",") or "fail" in parts[2]:
            continue
        host, _, rest = parts[1].partition(":")
        node = Primary(parts[0], host or "127.0.0.1", int(rest.split("@")[0]))
        _slot_ranges(parts[8:], node)
        out.append(node)
    return sorted(out, key=lambda n: (n.host, n.port))


def open_slots(source: Primary, target: Primary) -> list[int]:
    """Slots a move from ``source`` to ``target`` left half done (to finish first); a node shows
    its own open slots only, so read them with :meth:`Mover.read_open_slots` first."""
    return sorted(s for s, dst in source.migrating.items() if dst == target.id)


def _flag_importing(dst: "redis.Redis", flags: list[str]) -> None:
    """Set pause flags on the importing primary (``ASKING`` before each write of the slot)."""
    if not flags:
        return
    pipe = dst.pipeline(transaction=False)
    for flag in flags:
        _cmd(pipe, "ASKING")
        pipe.set(flag, FLAG_VALUE)
    pipe.execute()


class Mover:
    """Moves slots from one primary to another; clients to every primary by ``node id``.

    ``connect(host, port)`` makes a plain client of one node; ``tenant_ids`` are the platform's
    tenants (``wh:tenants``), to pause the ones whose keys hash to a moving slot even before they
    hold a key there."""

    def __init__(
        self,
        nodes: list[Primary],
        connect: Callable[[str, int], "redis.Redis"],
        tenant_ids: Iterable[str],
    ) -> None:
        self.nodes = {n.id: n for n in nodes}
        self.clients = {n.id: connect(n.host, n.port) for n in nodes}
        self.by_slot: dict[int, set[str]] = {}
        for t in tenant_ids:
            self.by_slot.setdefault(key_slot(keys.tenant_base(t).encode()), set()).add(t)

    def read_open_slots(self) -> None:
        """Each primary's own migrating and importing slots (``CLUSTER NODES`` shows them on the
        node's own line only)."""
        for node_id, client in self.clients.items():
            mine = next((n for n in primaries(client) if n.id == node_id), None)
            if mine is not None:
                self.nodes[node_id].migrating = mine.migrating
                self.nodes[node_id].importing = mine.importing

    def close(self) -> None:
        for c in self.clients.values():
            c.close()

    def _tenants_in(self, src: "redis.Redis", slot: int) -> set[str]:
        found = set(self.by_slot.get(slot, ()))
        for k in _cmd(src, "CLUSTER", "GETKEYSINSLOT", slot, MIGRATE_BATCH):
            m = _TENANT_KEY.match(k.decode() if isinstance(k, bytes) else str(k))
            if m:
                found.add(m.group(1))
        return found

    def move_slot(self, source: Primary, target: Primary, slot: int) -> SlotMove:
        """Move one slot, its tenants paused meanwhile (the steps in the module docstring)."""
        src, dst = self.clients[source.id], self.clients[target.id]
        tenants = self._tenants_in(src, slot)
        flags = [keys.moving(t) for t in sorted(tenants)]
        started = time.monotonic()
        resuming = slot in source.migrating
        if not resuming and flags:
            src.mset(dict.fromkeys(flags, FLAG_VALUE))
        _cmd(dst, "CLUSTER", "SETSLOT", slot, "IMPORTING", source.id)
        _flag_importing(dst, flags)
        _cmd(src, "CLUSTER", "SETSLOT", slot, "MIGRATING", target.id)
        # A tenant whose first key appeared since the listing (created just now): paused as well.
        late = [keys.moving(t) for t in sorted(self._tenants_in(src, slot) - tenants)]
        _flag_importing(dst, late)
        flags += late
        # No script runs on the source any more (its declared base is never a key there, so Redis
        # sends it on): the source's flags go, and every key that remains is the tenant's own,
        # migrated without REPLACE, so a key the target somehow holds too stops the move (BUSYKEY)
        # instead of being overwritten.
        for flag in flags:
            try:
                src.delete(flag)
            except redis.ResponseError:  # ASK: not on the source (a resumed move)
                pass
        moved = 0
        while batch := _cmd(src, "CLUSTER", "GETKEYSINSLOT", slot, MIGRATE_BATCH):
            _cmd(src, "MIGRATE", target.host, target.port, "", 0, MIGRATE_TIMEOUT_MS, "KEYS", *batch)
            moved += len(batch)
        # The new owner first, then the old one, then the rest (redis-cli's order).
        order = [target.id, source.id, *(i for i in self.clients if i not in (target.id, source.id))]
        for node_id in order:
            try:
                _cmd(self.clients[node_id], "CLUSTER", "SETSLOT", slot, "NODE", target.id)
            except redis.ResponseError as exc:
                # A primary that just gave up its last slot turns into a replica of the primary
                # that took it (Redis 7), and learns the owner from it: redis-cli ignores this too.
                if node_id == target.id or "only with masters" not in str(exc):
                    raise
        if flags:
            dst.delete(*flags)
        return SlotMove(slot, moved, len(flags), (time.monotonic() - started) * 1000)
