"""Operator commands the API serves: ``tenant create`` and ``dlq list|show|replay``.

Each calls the running platform's HTTP API through :class:`hookyard_client.AsyncClient` with
the admin token, both found by :func:`cli.platform_info.operator_api` (``--api-url`` or
``WEBHOOKS_API_URL``, else the ``platform.json`` of a running ``webhooks up``). When nothing
answers, or the API refuses a call, one line on stderr and a non-zero exit (cli/main.py):
never an empty answer from the wrong place. ``webhooks status`` reads Redis (cli/status.py).
"""

import argparse
import asyncio
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from cli.output import Out, Ticker
from cli.platform_info import operator_api
from hookyard_client import ApiConnectionError, ApiError, AsyncClient, Delivery
from webhooks.errors import WebhooksError
from webhooks.settings import Settings

MAX_IDS_PER_REPLAY = 10000  # the API's limit on the ids of one replay
PAGE_SIZE = 1000  # the API's largest page
FOLLOW_CONCURRENCY = 16  # deliveries read at once while following a replay
SETTLED = ("succeeded", "dead", "gone")

Command = Callable[[AsyncClient, Out], Coroutine[Any, Any, int]]


def run_api(s: Settings, args: argparse.Namespace, fn: Command) -> int:
    """Run ``fn`` with a client of the platform's API; its failures become one-line errors."""
    target = operator_api(s, getattr(args, "api_url", None))
    where = f"the API at {target.url} (from {target.source})"

    async def main() -> int:
        api = AsyncClient(
            target.url, target.token, tenant_id=getattr(args, "tenant", None), max_retries=2, backoff_s=0.25
        )
        async with api:
            try:
                return await fn(api, Out(getattr(args, "json", False)))
            except ApiConnectionError as exc:
                cause = exc.__cause__
                reason = f"{type(cause).__name__}: {cause}" if cause else str(exc)
                raise WebhooksError(f"cannot reach {where}: {reason}".replace("\n", " ")) from None
            except ApiError as exc:
                raise WebhooksError(f"{where} answered {exc}".replace("\n", " ")) from None

    return asyncio.run(main())


# -- tenants ---------------------------------------------------------------------------------------


def cmd_tenant_create(s: Settings, args: argparse.Namespace) -> int:
    async def go(api: AsyncClient, out: Out) -> int:
        t = await api.tenants.create(args.name)
        if out.json_mode:
            out.json(t.model_dump())
        else:
            out.line(f"tenant id: {t.id}")
            out.line(f"api key:   {t.api_key}")
        out.note("(the API key is shown once; keep it safe)")
        return 0

    return run_api(s, args, go)


# -- dead letters ----------------------------------------------------------------------------------


def dead_filters(args: argparse.Namespace) -> dict[str, Any]:
    """The ``dlq`` filters as the API's parameters (``--tenant`` travels as the client's tenant)."""
    return {
        "endpoint_id": args.endpoint,
        "event_type": args.event_type,
        "since": args.since,
        "until": args.until,
        "status_code": args.status_code,
    }


async def matching_dead(
    api: AsyncClient, args: argparse.Namespace, limit: int | None, tick: Ticker
) -> AsyncIterator[Delivery]:
    """Dead deliveries matching the filters, newest first, every page of the API's list."""
    page_size = PAGE_SIZE if limit is None else min(PAGE_SIZE, max(50, limit))
    found = 0
    async for d in api.dead_letters.list(**dead_filters(args), page_size=page_size):
        tick.advance(1)
        found += 1
        yield d
        if limit is not None and found >= limit:
            return


def cmd_dlq_list(s: Settings, args: argparse.Namespace) -> int:
    async def go(api: AsyncClient, out: Out) -> int:
        rows: list[Delivery] = []
        with out.progress("reading dead letters", None) as tick:
            async for d in matching_dead(api, args, args.limit + 1, tick):
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

    return run_api(s, args, go)


def _when(iso: str | None) -> str | None:
    """``2026-12-01 23:53:16`` from ``2026-12-01T23:53:16.336Z`` (UTC, to the second)."""
    return iso[:19].replace("T", " ") if iso else None


def cmd_dlq_show(s: Settings, args: argparse.Namespace) -> int:
    async def go(api: AsyncClient, out: Out) -> int:
        d = await api.deliveries.get(args.id)
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

    return run_api(s, args, go)


def _chunks(ids: list[str]) -> list[list[str]]:
    return [ids[i : i + MAX_IDS_PER_REPLAY] for i in range(0, len(ids), MAX_IDS_PER_REPLAY)]


def cmd_dlq_replay(s: Settings, args: argparse.Namespace) -> int:
    async def go(api: AsyncClient, out: Out) -> int:
        named = list(dict.fromkeys(i.strip() for i in args.ids.split(",") if i.strip())) if args.ids else None
        if args.dry_run:  # the API counts (and checks each named id: 404 for an unknown one)
            matched = 0
            for part in _chunks(named) if named else [None]:
                result = await api.dead_letters.replay(**dead_filters(args), ids=part, dry_run=True)
                matched += result.matched
            text = f"dry run: {matched} dead deliveries match; nothing was replayed"
            _say(out, {"dry_run": True, "matched": matched}, text)
            return 0
        if named is not None:
            ids = named
        else:  # listed first, so that a replay of many is shown progressing and can be followed
            with out.progress("finding dead letters", None) as tick:
                ids = [d.id async for d in matching_dead(api, args, None, tick)]
        replays, requeued = [], 0
        with out.progress("requeueing", len(ids)) as tick:
            for part in _chunks(ids):
                filters = {"endpoint_id": args.endpoint, "event_type": args.event_type}
                result = await api.dead_letters.replay(**filters, ids=part, rate_per_s=args.rate)
                requeued += result.matched
                replays.append(result.replay_id)
                tick.advance(len(part))
        pace = f" at {args.rate:g}/s (about {requeued / args.rate:.0f}s)" if args.rate and requeued else ""
        report: dict[str, Any] = {"replay_ids": replays, "matched": requeued}
        names = ", ".join(str(i) for i in replays) or "-"
        if args.wait and requeued:  # each replay's RQ job requeues; then its deliveries go out
            report["requeued"] = requeued = await _requeued(api, [i for i in replays if i], args.wait_s)
        if not args.json:
            done = "requeued" if args.wait else "matched; their replay's job requeues them"
            out.line(f"replay {names}: {requeued} dead deliveries {done}{pace}")
        if args.wait and requeued:
            report["outcome"] = await _follow(api, ids, out, args.wait_s)
            if not args.json:
                o = report["outcome"]
                again, waiting = o["dead"], o["waiting"]
                out.line(f"settled: {o['succeeded']} succeeded, {again} dead again, {waiting} still waiting")
        if args.json:
            out.json(report)
        return 0

    return run_api(s, args, go)


def _say(out: Out, value: dict[str, Any], text: str) -> None:
    if out.json_mode:
        out.json(value)
    else:
        out.line(text)


async def _state(api: AsyncClient, delivery_id: str, gate: asyncio.Semaphore) -> str:
    """A delivery's status, ``gone`` when it no longer exists (expired or trimmed)."""
    async with gate:
        try:
            return (await api.deliveries.get(delivery_id)).status.value
        except ApiError as exc:
            if exc.status == 404:
                return "gone"
            raise


async def _requeued(api: AsyncClient, replay_ids: list[str], timeout_s: float) -> int:
    """Wait until each replay's job went through (past ``matching`` and ``requeueing``); returns
    how many they requeued."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = [await api.replays.get(i) for i in replay_ids]
        if all(r.state not in ("matching", "requeueing") for r in found) or time.monotonic() > deadline:
            return sum(r.requeued for r in found)
        await asyncio.sleep(0.2)


async def _follow(api: AsyncClient, ids: list[str], out: Out, timeout_s: float) -> dict[str, int]:
    """Poll the replayed deliveries until each has succeeded or died again (or ``timeout_s``)."""
    deadline = time.monotonic() + timeout_s
    gate = asyncio.Semaphore(FOLLOW_CONCURRENCY)
    states: dict[str, str] = dict.fromkeys(ids, "pending")
    with out.progress("delivering", len(ids)) as tick:
        while True:
            waiting = [i for i, st in states.items() if st not in SETTLED]
            found = await asyncio.gather(*(_state(api, i, gate) for i in waiting))
            states.update(zip(waiting, found, strict=True))
            tick.advance(sum(1 for st in found if st in SETTLED))
            if all(st in SETTLED for st in states.values()) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
    values = list(states.values())
    return {
        "succeeded": values.count("succeeded"),
        "dead": values.count("dead"),
        "waiting": sum(1 for v in values if v not in SETTLED),
    }
