"""``webhooks cluster move-slots``: move hash slots between Redis Cluster primaries while the
platform runs, each slot's tenants paused only while their own slot moves (:mod:`webhooks.queueing.reshard`
says why ``redis-cli --cluster reshard`` alone is not safe here, and how a slot moves).

The cluster is the one ``WEBHOOKS_REDIS_CLUSTER_NODES`` names. Progress goes to stderr; the
summary to stdout (``--json``: one object). A move that stops half way says which slot is open
and exits 1: running the same command again finishes that slot first and resumes its tenants.
"""

import argparse
import statistics
import time

import redis

from cli.output import Out
from webhooks import keys
from webhooks.errors import ConfigError, StorageError
from webhooks.queueing.reshard import Mover, Primary, SlotMove, open_slots, primaries
from webhooks.runtime.connection import sync_client
from webhooks.settings import Settings
from webhooks.wiring import target_of


def _connect(host: str, port: int) -> "redis.Redis":
    return redis.Redis(host=host, port=port, socket_connect_timeout=5, socket_timeout=120)


def _layout(s: Settings) -> list[Primary]:
    """The primaries as the first reachable node of ``WEBHOOKS_REDIS_CLUSTER_NODES`` sees them."""
    if not s.redis_cluster_nodes:
        raise ConfigError("WEBHOOKS_REDIS_CLUSTER_NODES is not set: moving slots is for a Redis Cluster")
    problems = []
    for host, port in s.cluster_addresses:
        r = _connect(host, port)
        try:
            return primaries(r)
        except redis.RedisError as exc:
            problems.append(f"{host}:{port}: {type(exc).__name__}")
        finally:
            r.close()
    raise StorageError("cannot reach any node of WEBHOOKS_REDIS_CLUSTER_NODES (" + "; ".join(problems) + ")")


def _pick(nodes: list[Primary], name: str, flag: str) -> Primary:
    for n in nodes:
        if name in (n.id, n.address) or (len(name) >= 8 and n.id.startswith(name)):
            return n
    known = ", ".join(f"{n.address} ({n.id[:8]}, {len(n.slots)} slots)" for n in nodes)
    raise ConfigError(f"{flag} {name!r} is not a primary of this cluster; its primaries: {known}")


def cmd_cluster_move_slots(s: Settings, args: argparse.Namespace) -> int:
    out = Out(args.json)
    nodes = _layout(s)
    tenant_ids = _tenants(s)
    source, target = _pick(nodes, args.source, "--from"), _pick(nodes, args.to, "--to")
    if source.id == target.id:
        raise ConfigError("--from and --to name the same primary")
    want = len(source.slots) if args.slots is None else args.slots
    if want < 0:
        raise ConfigError("--slots must be 0 or more")
    mover = Mover(nodes, _connect, tenant_ids)
    done: list[SlotMove] = []
    started = time.monotonic()
    try:
        mover.read_open_slots()
        unfinished = open_slots(source, target)
        elsewhere = sorted(x for x, dst in source.migrating.items() if dst != target.id)
        if elsewhere:
            other = mover.nodes.get(source.migrating[elsewhere[0]])
            raise ConfigError(
                f"{len(elsewhere)} slots of {source.address} are half moved to another primary"
                f" ({other.address if other else source.migrating[elsewhere[0]]}): finish that move"
                " first, with that primary as --to"
            )
        todo = unfinished + [x for x in sorted(source.slots, reverse=True) if x not in unfinished][:want]
        if not todo:
            out.note(f"{source.address} holds no slots to move")
            return 0
        if unfinished:
            out.note(f"finishing {len(unfinished)} slots a previous move left half done: {unfinished[:10]}")
        with out.progress(f"moving {len(todo)} slots to {target.address}", len(todo)) as tick:
            for slot in todo:
                try:
                    done.append(mover.move_slot(source, target, slot))
                except redis.RedisError as exc:
                    out.note(
                        f"webhooks: stopped at slot {slot}: {exc}. That slot is half moved and its tenants"
                        " stay paused; run the same command again to finish it."
                    )
                    _summary(out, source, target, done, time.monotonic() - started)
                    return 1
                tick.advance()
    finally:
        mover.close()
    _summary(out, source, target, done, time.monotonic() - started)
    return 0


def _tenants(s: Settings) -> list[str]:
    rc = sync_client(target_of(s))  # decodes replies
    try:
        return [str(t) for t in rc.zrange(keys.TENANTS, 0, -1)]
    finally:
        rc.close()


def _summary(out: Out, source: Primary, target: Primary, done: list[SlotMove], took_s: float) -> None:
    paused = [m.paused_ms for m in done if m.tenants]
    summary = {
        "from": source.address,
        "to": target.address,
        "slots_moved": len(done),
        "keys_moved": sum(m.keys for m in done),
        "tenants_paused": sum(m.tenants for m in done),
        "longest_pause_ms": round(max(paused), 1) if paused else 0,
        "median_pause_ms": round(statistics.median(paused), 1) if paused else 0,
        "seconds": round(took_s, 2),
    }
    if out.json_mode:
        out.json(summary)
        return
    out.line(
        f"moved {summary['slots_moved']} slots ({summary['keys_moved']} keys) from {source.address} to"
        f" {target.address} in {summary['seconds']} s; {summary['tenants_paused']} tenants paused while"
        f" their slot moved: median {summary['median_pause_ms']} ms, longest {summary['longest_pause_ms']} ms"
    )
