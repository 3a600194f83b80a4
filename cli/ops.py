"""Operator commands: ``tenant create``, ``dlq list|show|replay``, ``status``.

Each finds its Redis with :func:`cli.platform_info.operator_target` (explicit settings, else the
``platform.json`` of a running ``webhooks up``), checks that it answers, and says so on stderr
with a non-zero exit when it does not: never an empty answer from the wrong store.
"""

import argparse
import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import redis
from redis.asyncio import Redis

from cli.output import Out, Ticker
from cli.platform_info import operator_target
from webhooks.config import policy_of
from webhooks.connection import async_client, async_rq_client
from webhooks.errors import Invalid, StorageError
from webhooks.models import Delivery
from webhooks.secretbox import SecretBox
from webhooks.settings import Settings
from webhooks.status import delivery_states, snapshot
from webhooks.store import DeadFilter, Store
from webhooks.timefmt import iso_from_ms, ms_from_datetime

MAX_IDS_PER_REPLAY = 10000  # the store's limit for one replay by ids
SETTLED = ("succeeded", "dead", "gone")

Command = Callable[[Redis, Store, Out], Coroutine[Any, Any, int]]


def now_ms() -> int:
    return int(time.time() * 1000)


def run_ops(s: Settings, args: argparse.Namespace, fn: Command) -> int:
    target, source = operator_target(s)

    async def main() -> int:
        r = async_client(target)
        try:
            try:
                await r.ping()
            except redis.RedisError as exc:
                raise StorageError(
                    f"cannot reach Redis at {target.describe()} (from {source}): {type(exc).__name__}"
                ) from None
            box = SecretBox(s.secret_key.get_secret_value() if s.secret_key else None)
            return await fn(r, Store(r, box, policy_of(s)), Out(getattr(args, "json", False)))
        finally:
            await r.aclose()

    return asyncio.run(main())


# -- tenants ---------------------------------------------------------------------------------------


def cmd_tenant_create(s: Settings, args: argparse.Namespace) -> int:
    async def go(r: Redis, store: Store, out: Out) -> int:
        t = await store.create_tenant(args.name, now_ms())
        if out.json_mode:
            out.json(t.model_dump())
        else:
            out.line(f"tenant id: {t.id}")
            out.line(f"api key:   {t.api_key}")
        out.note("(the API key is shown once; keep it safe)")
        return 0

    return run_ops(s, args, go)


# -- dead letters ----------------------------------------------------------------------------------


def status_code_matcher(spec: str | None) -> Callable[[int | None], bool]:
    """``500`` exactly, ``5xx`` a class, ``none`` no response at all (timeout, connection error)."""
    if spec is None:
        return lambda code: True
    spec = spec.strip().lower()
    if spec == "none":
        return lambda code: code is None
    if len(spec) == 3 and spec[0].isdigit() and spec[1:] == "xx":
        return lambda code: code is not None and code // 100 == int(spec[0])
    if spec.isdigit() and 100 <= int(spec) <= 599:
        return lambda code: code == int(spec)
    raise Invalid(f"--status-code: a status (500), a class (5xx) or none, not {spec!r}")


def dead_filter(args: argparse.Namespace) -> DeadFilter:
    return DeadFilter(
        endpoint_id=args.endpoint,
        event_type=args.event_type,
        since_ms=ms_from_datetime(args.since) if args.since else None,
        until_ms=ms_from_datetime(args.until) if args.until else None,
    )


async def matching_dead(
    store: Store, args: argparse.Namespace, limit: int | None, tick: Ticker
) -> AsyncIterator[Delivery]:
    """Dead deliveries matching the filters, newest first (``--status-code`` applied here)."""
    f, wanted = dead_filter(args), status_code_matcher(args.status_code)
    found, cursor = 0, None
    while limit is None or found < limit:
        page = await store.list_dead(args.tenant, f, 1000, cursor)
        tick.advance(len(page.data))
        for d in page.data:
            if wanted(d.last_status_code):
                found += 1
                yield d
                if limit is not None and found >= limit:
                    return
        cursor = page.next_cursor
        if not cursor:
            return


def cmd_dlq_list(s: Settings, args: argparse.Namespace) -> int:
    async def go(r: Redis, store: Store, out: Out) -> int:
        rows: list[Delivery] = []
        with out.progress("reading dead letters", None) as tick:
            async for d in matching_dead(store, args, args.limit + 1, tick):
                rows.append(d)
        more, rows = len(rows) > args.limit, rows[: args.limit]
        if out.json_mode:
            for d in rows:
                out.json(d.model_dump())
        elif rows:
            # The tenant column only when it tells something (a terminal's width is precious).
            tenants = not out.rich or len({d.tenant_id for d in rows}) > 1
            columns = ["delivery", "dead at", *(["tenant"] if tenants else []), "endpoint", "event type"]
            out.table(
                None,
                [*columns, "attempts", "status"],
                [
                    (
                        d.id,
                        _when(d.dead_at),
                        *([d.tenant_id] if tenants else []),
                        d.endpoint_id,
                        d.event_type,
                        d.attempt_count,
                        d.last_status_code,
                    )
                    for d in rows
                ],
            )
        out.note(f"{len(rows)} dead deliveries shown" + (" (more exist; raise --limit)" if more else ""))
        return 0

    return run_ops(s, args, go)


def _when(iso: str | None) -> str | None:
    """``2026-12-01 23:53:16`` from ``2026-12-01T23:53:16.336Z`` (UTC, to the second)."""
    return iso[:19].replace("T", " ") if iso else None


def cmd_dlq_show(s: Settings, args: argparse.Namespace) -> int:
    async def go(r: Redis, store: Store, out: Out) -> int:
        d = await store.get_delivery(args.tenant, args.id)
        if out.json_mode:
            out.json(d.model_dump())
            return 0
        out.fields(
            f"delivery {d.id}",
            [
                ("status", d.status.value),
                ("tenant", d.tenant_id),
                ("event", f"{d.event_id} ({d.event_type})"),
                ("endpoint", d.endpoint_id),
                ("created at", d.created_at),
                ("dead at", d.dead_at),
                ("attempts", d.attempt_count),
                ("next attempt", d.next_attempt_at),
            ],
        )
        out.table(
            "attempts",
            ["#", "at", "status", "ms", "error", "response"],
            [
                (
                    a.number,
                    a.at,
                    a.status_code,
                    a.duration_ms,
                    a.error,
                    (a.response_excerpt or "")[:60] or None,
                )
                for a in d.attempts
            ],
        )
        return 0

    return run_ops(s, args, go)


def cmd_dlq_replay(s: Settings, args: argparse.Namespace) -> int:
    async def go(r: Redis, store: Store, out: Out) -> int:
        if args.ids:
            ids = list(dict.fromkeys(i.strip() for i in args.ids.split(",") if i.strip()))
        else:
            with out.progress("finding dead letters", None) as tick:
                ids = [d.id async for d in matching_dead(store, args, None, tick)]
        if args.dry_run:
            matched = len(ids)
            if args.ids:  # named ids: the store checks each (404 for an unknown one) and counts the dead
                f = dead_filter(args)
                matched = (
                    await store.replay(args.tenant, f, ids, dry_run=True, rate_per_s=None, now_ms=now_ms())
                ).matched
            text = f"dry run: {matched} dead deliveries match; nothing was replayed"
            _say(out, {"dry_run": True, "matched": matched}, text)
            return 0
        replays, requeued = [], 0
        with out.progress("requeueing", len(ids)) as tick:
            for start in range(0, len(ids), MAX_IDS_PER_REPLAY):
                part = ids[start : start + MAX_IDS_PER_REPLAY]
                result = await store.replay(
                    args.tenant, dead_filter(args), part, dry_run=False, rate_per_s=args.rate, now_ms=now_ms()
                )
                requeued += result.matched
                replays.append(result.replay_id)
                tick.advance(len(part))
        pace = f" at {args.rate:g}/s (about {requeued / args.rate:.0f}s)" if args.rate and requeued else ""
        report: dict[str, Any] = {"replay_ids": replays, "matched": requeued}
        if not args.json:
            named = ", ".join(str(i) for i in replays) or "-"
            out.line(f"replay {named}: {requeued} dead deliveries requeued{pace}")
        if args.wait and requeued:
            report["outcome"] = await _follow(r, ids, out, args.wait_s, args.tenant)
            if not args.json:
                o = report["outcome"]
                again, waiting = o["dead"], o["waiting"]
                out.line(f"settled: {o['succeeded']} succeeded, {again} dead again, {waiting} still waiting")
        if args.json:
            out.json(report)
        return 0

    return run_ops(s, args, go)


def _say(out: Out, value: dict[str, Any], text: str) -> None:
    if out.json_mode:
        out.json(value)
    else:
        out.line(text)


async def _follow(
    r: Redis, ids: list[str], out: Out, timeout_s: float, tenant: str | None = None
) -> dict[str, int]:
    """Poll the replayed deliveries until each has succeeded or died again (or ``timeout_s``)."""
    deadline = time.monotonic() + timeout_s
    states: dict[str, str] = {}
    with out.progress("delivering", len(ids)) as tick:
        settled = 0
        while True:
            states = {}
            for start in range(0, len(ids), 1000):
                states.update(await delivery_states(r, ids[start : start + 1000], tenant))
            now_settled = sum(1 for v in states.values() if v in SETTLED)
            tick.advance(now_settled - settled)
            settled = now_settled
            if settled == len(ids) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
    values = list(states.values())
    return {
        "succeeded": values.count("succeeded"),
        "dead": values.count("dead"),
        "waiting": sum(1 for v in values if v not in SETTLED),
    }


# -- status ----------------------------------------------------------------------------------------


def _age(ms: int | None, now: int) -> str | None:
    return None if ms is None else f"{max(0.0, (now - ms) / 1000):.1f}s ago"


def _mib(n: int) -> str:
    return f"{n / 1048576:.1f} MiB"


def cmd_status(s: Settings, args: argparse.Namespace) -> int:
    async def go(r: Redis, store: Store, out: Out) -> int:
        target, _ = operator_target(s)
        rq = async_rq_client(target) if target.rq_url else None
        try:
            st = await snapshot(r, now_ms(), rq)
        finally:
            if rq is not None:
                await rq.aclose()
        if out.json_mode:
            out.json(dataclasses.asdict(st))
            return 0
        now = st.now_ms
        out.table(
            f"workers ({len(st.workers)} registered with RQ)",
            ["name", "host", "pid", "state", "last heartbeat", "started"],
            [
                (w.name, w.hostname, w.pid, w.state, _age(w.last_heartbeat_ms, now), iso_from_ms(w.birth_ms))
                for w in st.workers
            ],
        )
        leader = st.scheduler_leader
        out.fields(
            "scheduler",
            [
                (
                    "leader",
                    f"pid {leader.split(':')[0]} (lock {leader}, {st.scheduler_lock_ttl_ms} ms left)"
                    if leader
                    else "none: retries and reclaims wait",
                )
            ],
        )
        oldest = f"{st.oldest_ready_age_s:.1f}s" if st.oldest_ready_age_s is not None else None
        nxt = f"in {st.next_retry_in_s:.1f}s" if st.next_retry_in_s is not None else None
        maxmem = _mib(st.maxmemory_bytes) if st.maxmemory_bytes else "no limit"
        out.fields(
            "queues",
            [
                ("ready", f"{st.ready} (oldest waiting {oldest or '-'})"),
                ("in flight", f"{st.leased} deliveries under {st.leases} leases"),
                ("retry backlog", f"{st.retry_backlog} ({st.retries_overdue} due now, next {nxt or '-'})"),
                ("dead letters", st.dead_letters),
                ("drain jobs", f"{st.drain_jobs} queued for workers"),
            ],
        )
        out.fields(
            "redis",
            [("server", st.redis_server), ("memory", f"{_mib(st.used_memory_bytes)} used of {maxmem}")],
        )
        return 0

    return run_ops(s, args, go)
