"""``webhooks endpoint show|pause|resume ID --tenant T``: an endpoint's settings and health, and
its pause switch, through the running platform's API with the admin token (as ``cli/api_commands.py``).

``show`` prints the endpoint's ``health`` (state, consecutive failures, when the next attempt or
circuit-breaker probe goes, requests in flight, deliveries ready and retrying) and ``paused``;
``pause`` holds every delivery of the endpoint (nothing is sent; they wait ``pending``) and
``resume`` releases them.
"""

import argparse

from cli.api_commands import run_api
from cli.output import Out
from hookyard_client import AsyncClient, Endpoint
from webhooks.settings import Settings


def _when(iso: str | None) -> str | None:
    return iso[:19].replace("T", " ") + " UTC" if iso else None


def show_endpoint(out: Out, e: Endpoint) -> None:
    if out.json_mode:
        out.json(e.model_dump())
        return
    h = e.health
    out.fields(
        f"endpoint {e.id}",
        [
            ("url", e.url),
            ("tenant", e.tenant_id),
            ("state", h.state if h else None),
            ("paused", "yes" if e.paused else "no"),
            ("disabled", e.disabled_reason if e.disabled else "no"),
            ("consecutive failures", h.consecutive_failures if h else None),
            ("next attempt", _when(h.next_attempt_at) if h else None),
            ("in flight", h.in_flight if h else None),
            ("ready", h.ready if h else None),
            ("retrying", h.retrying if h else None),
            ("max in flight", e.max_in_flight),
            ("rate limit /s", e.rate_limit_per_s),
            ("ordering", e.ordering),
        ],
    )


def cmd_endpoint_show(s: Settings, args: argparse.Namespace) -> int:
    async def go(api: AsyncClient, out: Out) -> int:
        show_endpoint(out, await api.endpoints.get(args.id))
        return 0

    return run_api(s, args, go)


def _set_paused(s: Settings, args: argparse.Namespace, paused: bool) -> int:
    async def go(api: AsyncClient, out: Out) -> int:
        e = await api.endpoints.update(args.id, paused=paused)
        show_endpoint(out, e)
        out.note("paused: nothing is sent until `webhooks endpoint resume`" if paused else "resumed")
        return 0

    return run_api(s, args, go)


def cmd_endpoint_pause(s: Settings, args: argparse.Namespace) -> int:
    return _set_paused(s, args, True)


def cmd_endpoint_resume(s: Settings, args: argparse.Namespace) -> int:
    return _set_paused(s, args, False)
