"""The ``webhooks`` console script (also ``python -m cli``): arguments, settings, errors, exit codes.

Settings are read once here (:func:`webhooks.settings.load`) and passed down. A bad setting
prints one line naming the variable and exits with status 2; a domain error, an unreachable
Redis or API, or an error answer of the API prints one line and exits with status 1. Each
command's module is imported only when that command runs, so operator commands start quickly.
"""

import argparse
import importlib
import sys
from datetime import datetime
from typing import Any

from cli import lifeline
from webhooks import DISTRIBUTION, __version__
from webhooks.errors import ConfigError, WebhooksError
from webhooks.runtime import logs
from webhooks.settings import load


def _iso(value: str) -> datetime:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {value!r}") from None


def _command(parser: argparse.ArgumentParser, target: str) -> argparse.ArgumentParser:
    """``target`` is ``module:function`` under ``cli``; imported when the command runs."""
    parser.set_defaults(target=target)
    return parser


def _dead_filters(c: argparse.ArgumentParser) -> None:
    c.add_argument("--tenant", help="tenant id (default: every tenant)")
    c.add_argument("--endpoint", help="endpoint id")
    c.add_argument("--event-type")
    c.add_argument("--status-code", help="last response status: 500, a class (5xx), or none (no response)")
    c.add_argument("--since", type=_iso, help="died at or after this ISO 8601 time")
    c.add_argument("--until", type=_iso, help="died before this ISO 8601 time")


def _api(c: argparse.ArgumentParser) -> None:
    c.add_argument(
        "--api-url",
        help="the platform's API (default: WEBHOOKS_API_URL, else the `webhooks up` of WEBHOOKS_DATA_DIR)",
    )


def _json(c: argparse.ArgumentParser, what: str = "one JSON document") -> None:
    c.add_argument("--json", action="store_true", help=f"print {what} (for scripts)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="webhooks", description="Signed, retried, durable webhook deliveries.")
    p.add_argument(
        "--version", action="version", version=f"{DISTRIBUTION} {__version__}", help="the installed version"
    )
    sub = p.add_subparsers(dest="command", required=True)

    up = _command(
        sub.add_parser("up", help="API, workers and scheduler on one machine (embedded Redis)"), "up:cmd_up"
    )
    up.add_argument("--workers", type=int, default=2, help="delivery worker processes (default 2)")
    up.add_argument("--verbose", action="store_true", help="show the processes' logs here too")
    up.add_argument(
        "--dev",
        action="store_true",
        help="allow private/loopback targets and retry on a short schedule (trying it out, not production)",
    )
    up.add_argument("--allow-unsafe-redis", action="store_true", help="start even if Redis is not durable")
    _command(sub.add_parser("api", help="the HTTP API"), "processes:cmd_api")
    w = _command(sub.add_parser("worker", help="one delivery worker process"), "processes:cmd_worker")
    w.add_argument("--no-scheduler", action="store_true", help="do not embed a scheduler")
    w.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    _command(sub.add_parser("scheduler", help="retry/maintenance scheduler"), "processes:cmd_scheduler")

    tenant = sub.add_parser("tenant", help="tenants").add_subparsers(dest="tenant_command", required=True)
    tc = _command(
        tenant.add_parser("create", help="create a tenant; prints its id and API key"),
        "api_commands:cmd_tenant_create",
    )
    tc.add_argument("name")
    _api(tc)
    _json(tc)

    ep = sub.add_parser("endpoint", help="an endpoint's health; pause and resume").add_subparsers(
        dest="endpoint_command", required=True
    )
    for name, what in (
        ("show", "settings and health (state, failures, next attempt, in flight, ready, retrying)"),
        ("pause", "send nothing to it: its deliveries wait pending, new events still queue"),
        ("resume", "send again what waits, at its max_in_flight and rate limit"),
    ):
        c = _command(ep.add_parser(name, help=what), f"endpoint_commands:cmd_endpoint_{name}")
        c.add_argument("id", help="endpoint id")
        c.add_argument("--tenant", required=True, help="the endpoint's tenant id")
        _api(c)
        _json(c)

    dlq = sub.add_parser("dlq", help="dead letters").add_subparsers(dest="dlq_command", required=True)
    ls = _command(dlq.add_parser("list", help="dead deliveries, newest first"), "api_commands:cmd_dlq_list")
    _dead_filters(ls)
    ls.add_argument("--limit", type=int, default=100, help="show at most this many (default 100)")
    _api(ls)
    _json(ls, "one JSON object per line")
    show = _command(dlq.add_parser("show", help="one delivery and its attempts"), "api_commands:cmd_dlq_show")
    show.add_argument("id", help="delivery id")
    show.add_argument("--tenant", help="tenant id (default: any)")
    _api(show)
    _json(show)
    rp = _command(dlq.add_parser("replay", help="send dead deliveries again"), "api_commands:cmd_dlq_replay")
    _dead_filters(rp)
    rp.add_argument("--ids", help="comma-separated delivery ids (instead of the filters)")
    rp.add_argument("--dry-run", action="store_true", help="only count")
    rp.add_argument("--rate", type=float, help="deliveries per second")
    rp.add_argument("--wait", action="store_true", help="follow the replayed deliveries until they settle")
    rp.add_argument("--wait-s", type=float, default=600.0, help="longest --wait (default 600 s)")
    _api(rp)
    _json(rp)

    st = _command(
        sub.add_parser("status", help="workers, scheduler, queues, dead letters, Redis memory"),
        "status:cmd_status",
    )
    _json(st)
    cl = sub.add_parser("cluster", help="Redis Cluster operations").add_subparsers(
        dest="cluster_command", required=True
    )
    mv = _command(
        cl.add_parser(
            "move-slots",
            help="move hash slots (and the tenants in them) to another primary while the platform runs",
        ),
        "cluster:cmd_cluster_move_slots",
    )
    mv.add_argument(
        "--from", dest="source", required=True, help="the primary giving slots: host:port or node id"
    )
    mv.add_argument("--to", required=True, help="the primary receiving them: host:port or node id")
    mv.add_argument("--slots", type=int, help="how many slots to move (default: all of --from's)")
    _json(mv, "the summary as JSON")
    demo = _command(
        sub.add_parser("demo", help="the kill-and-restart demonstration on its own stack"), "demo:cmd_demo"
    )
    demo.add_argument("--events", type=int, default=300, help="events to send (default 300)")
    demo.add_argument("--verbose", action="store_true", help="keep and print the stack's log folder")
    _json(demo, "the summary as JSON")
    return p


def _setup_logging(level: str, fmt: str = "text") -> None:
    logs.configure(fmt, level)  # text or JSON lines, secrets redacted (webhooks/runtime/logs.py)


def main(argv: list[str] | None = None) -> int:
    lifeline.watch_from_env()  # a child of `webhooks up` ends when `up` ends
    args = build_parser().parse_args(argv)
    try:
        settings = load()
        _setup_logging(settings.log_level, settings.log_format)
        module, _, name = args.target.partition(":")
        fn: Any = getattr(importlib.import_module(f"cli.{module}"), name)
        code: int = fn(settings, args)
        return code
    except ConfigError as exc:
        print(f"webhooks: {exc}", file=sys.stderr)
        return 2
    except WebhooksError as exc:
        print(f"webhooks: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except OSError as exc:
        print(f"webhooks: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        import redis

        if isinstance(exc, redis.RedisError):
            print(f"webhooks: cannot use Redis: {exc}", file=sys.stderr)
            return 1
        raise
