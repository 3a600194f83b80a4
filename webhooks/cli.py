"""The ``webhooks`` console script: processes (up, api, worker, scheduler) and operator tools.

Settings are read once here (:func:`webhooks.settings.load`) and passed down.
A bad setting prints one line naming the variable and exits with status 2.
"""

import argparse
import asyncio
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from datetime import datetime
from pathlib import Path
from typing import Any

from webhooks import __version__, logs
from webhooks.connection import RedisTarget, async_client, sync_client, warn_if_not_durable
from webhooks.errors import ConfigError, WebhooksError
from webhooks.secretbox import SecretBox
from webhooks.settings import Settings, load
from webhooks.store import DeadFilter, Policy, Store
from webhooks.timefmt import ms_from_datetime

log = logging.getLogger("webhooks")


def _setup_logging(level: str, format: str = "text") -> None:
    logs.configure(format, level)


def target_of(s: Settings) -> RedisTarget:
    return RedisTarget(s.effective_redis_url, tuple(s.sentinel_addresses), s.redis_sentinel_master)


def box_of(s: Settings) -> SecretBox:
    if s.secret_key is None:
        log.warning("WEBHOOKS_SECRET_KEY is not set: endpoint signing secrets are stored unencrypted")
        return SecretBox(None)
    return SecretBox(s.secret_key.get_secret_value())


def policy_of(s: Settings) -> Policy:
    return Policy(
        allow_private_targets=s.allow_private_targets,
        https_only=s.https_only,
        max_payload_bytes=s.max_payload_bytes,
        max_endpoints_per_tenant=s.max_endpoints_per_tenant,
        tenant_rate_per_s=s.tenant_rate_limit_per_s,
        tenant_burst=s.tenant_rate_burst,
        retention_ms=s.retention_ms,
    )


def engine_config_of(s: Settings) -> Any:
    from workers.engine import EngineConfig

    return EngineConfig(
        schedule=s.schedule,
        request_timeout_s=s.request_timeout_s,
        concurrency=s.worker_concurrency,
        endpoint_concurrency=s.endpoint_concurrency,
        lease_ttl_s=s.lease_ttl_s,
        retention_ms=s.retention_ms,
    )


# -- processes ------------------------------------------------------------------------------------


def cmd_api(s: Settings, _: argparse.Namespace) -> int:
    import redis
    import uvicorn

    if s.admin_token is None:
        raise ConfigError("WEBHOOKS_ADMIN_TOKEN: the API refuses to start without an admin token")
    if s.api_workers > 1:
        from webhooks.multiproc import use_multiprocess_dir

        use_multiprocess_dir()  # every uvicorn worker's metrics in one /metrics answer
    try:
        warn_if_not_durable(sync_client(target_of(s)))
    except redis.RedisError as exc:
        log.warning("Redis is not reachable yet (%s): the API answers 503 until it is", type(exc).__name__)
    uvicorn.run(
        "api.main:app",
        factory=True,
        host=s.api_host,
        port=s.api_port,
        workers=s.api_workers,
        loop="uvloop",
        http="httptools",
        log_level=s.log_level.lower(),
        log_config=None,  # uvicorn's records go through our handler (webhooks.logs)
        access_log=False,
        proxy_headers=False,
        server_header=False,
    )
    return 0


def cmd_worker(s: Settings, args: argparse.Namespace) -> int:
    from workers.process import run_worker

    run_worker(
        target_of(s),
        box_of(s),
        engine_config_of(s),
        allow_private=s.allow_private_targets,
        with_scheduler=not args.no_scheduler,
        burst=args.burst,
        metrics_port=s.metrics_port if args.metrics_port is None else args.metrics_port,
        metrics_host=s.metrics_host,
        per_endpoint_metrics=s.metrics_per_endpoint,
    )
    return 0


def cmd_scheduler(s: Settings, args: argparse.Namespace) -> int:
    from workers.process import run_scheduler

    port = s.metrics_port if args.metrics_port is None else args.metrics_port
    run_scheduler(target_of(s), s.request_timeout_s, s.retention_ms, port, s.metrics_host)
    return 0


def _persisted(path: Path, make: Callable[[], str]) -> str:
    """A value kept in a 0600 file under the data directory, created on first use."""
    if path.exists():
        return path.read_text().strip()
    value = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    return value


def _port_free(host: str, port: int) -> bool:
    import socket

    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _metrics_ports(host: str, first: int, n: int) -> list[int]:
    """``n`` free ports from ``first`` up, for the ``/metrics`` of ``up``'s workers and scheduler."""
    ports: list[int] = []
    port = first
    while len(ports) < n:
        if port > 65535:
            raise ConfigError(f"WEBHOOKS_METRICS_PORT: no {n} free ports from {first} on {host}")
        if _port_free(host, port):
            ports.append(port)
        port += 1
    return ports


def cmd_up(s: Settings, args: argparse.Namespace) -> int:
    from webhooks.embedded import EmbeddedRedis

    data_dir = s.data_dir.resolve()
    # each worker and the scheduler serve /metrics on their own port (WEBHOOKS_METRICS_PORT and up)
    metrics_ports = _metrics_ports(s.metrics_host, s.metrics_port or s.api_port + 1, args.workers + 1)
    env = dict(os.environ)
    embedded = None
    if not s.redis_url and not s.redis_sentinels:
        embedded = EmbeddedRedis(data_dir / "redis")
        env["WEBHOOKS_REDIS_URL"] = embedded.start()
        redis_desc = f"embedded redis-server (AOF under {data_dir / 'redis'})"
    else:
        redis_desc = target_of(s).describe()
        problems = warn_if_not_durable(sync_client(target_of(s)))
        if problems and not args.allow_unsafe_redis:
            print(
                "refusing to start: " + "; ".join(problems) + " (or pass --allow-unsafe-redis)",
                file=sys.stderr,
            )
            return 2
    token = (
        s.admin_token.get_secret_value()
        if s.admin_token
        else _persisted(data_dir / "admin-token", lambda: secrets.token_urlsafe(32))
    )
    env["WEBHOOKS_ADMIN_TOKEN"] = token
    if s.secret_key is None:
        env["WEBHOOKS_SECRET_KEY"] = _persisted(data_dir / "secret-key", lambda: secrets.token_urlsafe(48))
    if not _port_free(s.api_host, s.api_port):
        if embedded:
            embedded.stop()
        print(
            f"refusing to start: {s.api_host}:{s.api_port} is in use (set WEBHOOKS_API_PORT)", file=sys.stderr
        )
        return 2
    me = [sys.executable, "-m", "webhooks"]
    specs = [("api", [*me, "api"])]
    specs += [(f"worker-{i + 1}", [*me, "worker", "--no-scheduler"]) for i in range(args.workers)]
    specs.append(("scheduler", [*me, "scheduler"]))
    for (_, argv), mport in zip(specs[1:], metrics_ports, strict=True):
        argv += ["--metrics-port", str(mport)]
    sup = _Supervisor(specs, env)
    stop = {"now": False}

    def _on_signal(signum: int, _: Any) -> None:
        stop["now"] = True

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    try:
        sup.start_all()
        import urllib.request

        url = f"http://{s.api_host}:{s.api_port}"
        deadline = time.monotonic() + 30
        while not stop["now"] and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(url + "/readyz", timeout=1) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                time.sleep(0.1)
        print(f"webhooks {__version__} is up", flush=True)
        print(f"  API:          {url}  (OpenAPI at {url}/docs)", flush=True)
        print(f"  admin token:  {token}", flush=True)
        print(f"  redis:        {redis_desc}", flush=True)
        print(f"  processes:    api, {args.workers} worker(s), scheduler — Ctrl-C stops all", flush=True)
        names = [name for name, _ in specs[1:]]
        scrape = ", ".join(
            f"{n} http://{s.metrics_host}:{p}/metrics" for n, p in zip(names, metrics_ports, strict=True)
        )
        print(f"  metrics:      api {url}/metrics, {scrape}", flush=True)
        while not stop["now"]:
            sup.restart_dead()
            time.sleep(0.2)
        print("stopping…", flush=True)
    finally:
        sup.stop_all()
        if embedded:
            embedded.stop()
    print("stopped", flush=True)
    return 0


class _Supervisor:
    """Starts child processes, restarts any that die, stops them all (TERM, then KILL)."""

    def __init__(self, specs: list[tuple[str, list[str]]], env: dict[str, str]) -> None:
        self.specs = specs
        self.env = env
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.restarts: dict[str, float] = {}

    def _start(self, name: str, argv: list[str]) -> None:
        self.procs[name] = subprocess.Popen(argv, env=self.env, start_new_session=True)

    def start_all(self) -> None:
        for name, argv in self.specs:
            self._start(name, argv)

    def restart_dead(self) -> None:
        for name, argv in self.specs:
            proc = self.procs.get(name)
            if proc is not None and proc.poll() is not None:
                if time.monotonic() - self.restarts.get(name, 0.0) < 1.0:
                    continue
                print(f"{name} exited with status {proc.returncode}; restarting", file=sys.stderr, flush=True)
                self.restarts[name] = time.monotonic()
                self._start(name, argv)

    def stop_all(self, timeout_s: float = 20.0) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


# -- operator tools --------------------------------------------------------------------------------


def _run_store(s: Settings, fn: Callable[[Store], Coroutine[Any, Any, int]]) -> int:
    async def main() -> int:
        r = async_client(target_of(s))
        try:
            return await fn(
                Store(r, SecretBox(s.secret_key.get_secret_value() if s.secret_key else None), policy_of(s))
            )
        finally:
            await r.aclose()

    return asyncio.run(main())


def cmd_tenant_create(s: Settings, args: argparse.Namespace) -> int:
    async def go(store: Store) -> int:
        t = await store.create_tenant(args.name, int(time.time() * 1000))
        print(f"tenant id: {t.id}")
        print(f"api key:   {t.api_key}")
        print("(the API key is shown once; keep it safe)", file=sys.stderr)
        return 0

    return _run_store(s, go)


def _dead_filter(args: argparse.Namespace) -> DeadFilter:
    return DeadFilter(
        endpoint_id=args.endpoint,
        event_type=args.event_type,
        since_ms=ms_from_datetime(args.since) if args.since else None,
        until_ms=ms_from_datetime(args.until) if args.until else None,
    )


def cmd_dlq_list(s: Settings, args: argparse.Namespace) -> int:
    async def go(store: Store) -> int:
        shown, cursor = 0, None
        f = _dead_filter(args)
        if not args.json:
            print(f"{'delivery':32} {'dead at':25} {'endpoint':32} {'event type':24} attempts  last")
        while shown < args.limit:
            page = await store.list_dead(args.tenant, f, min(1000, args.limit - shown), cursor)
            for d in page.data:
                if args.json:
                    print(d.model_dump_json())
                else:
                    print(
                        f"{d.id:32} {d.dead_at or '':25} {d.endpoint_id:32} {d.event_type:24} "
                        f"{d.attempt_count:8}  {d.last_status_code or '-'}"
                    )
            shown += len(page.data)
            cursor = page.next_cursor
            if not cursor:
                break
        print(
            f"{shown} dead deliveries shown" + (" (more exist; raise --limit)" if cursor else ""),
            file=sys.stderr,
        )
        return 0

    return _run_store(s, go)


def cmd_dlq_replay(s: Settings, args: argparse.Namespace) -> int:
    async def go(store: Store) -> int:
        result = await store.replay(
            args.tenant,
            _dead_filter(args),
            args.ids.split(",") if args.ids else None,
            dry_run=args.dry_run,
            rate_per_s=args.rate,
            now_ms=int(time.time() * 1000),
        )
        if result.dry_run:
            print(f"dry run: {result.matched} dead deliveries match; nothing was replayed")
        else:
            pace = f" at {args.rate:g}/s (about {result.matched / args.rate:.0f}s)" if args.rate else ""
            print(f"replay {result.replay_id}: {result.matched} dead deliveries requeued{pace}")
        return 0

    return _run_store(s, go)


def _iso(value: str) -> datetime:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {value!r}") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="webhooks", description="Signed, retried, durable webhook deliveries.")
    p.add_argument("--version", action="version", version=f"webhooks {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="API, workers and scheduler on one machine (embedded Redis by default)")
    up.add_argument("--workers", type=int, default=2, help="delivery worker processes (default 2)")
    up.add_argument("--allow-unsafe-redis", action="store_true", help="start even if Redis is not durable")
    up.set_defaults(fn=cmd_up)
    sub.add_parser("api", help="the HTTP API").set_defaults(fn=cmd_api)
    w = sub.add_parser("worker", help="one delivery worker process")
    w.add_argument("--no-scheduler", action="store_true", help="do not embed a scheduler")
    w.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    w.add_argument("--metrics-port", type=int, help="serve /metrics here (default WEBHOOKS_METRICS_PORT)")
    w.set_defaults(fn=cmd_worker)
    sc = sub.add_parser("scheduler", help="retry/maintenance scheduler")
    sc.add_argument("--metrics-port", type=int, help="serve /metrics here (default WEBHOOKS_METRICS_PORT)")
    sc.set_defaults(fn=cmd_scheduler)
    tenant = sub.add_parser("tenant", help="tenants").add_subparsers(dest="tenant_command", required=True)
    tc = tenant.add_parser("create", help="create a tenant; prints its id and API key")
    tc.add_argument("name")
    tc.set_defaults(fn=cmd_tenant_create)
    dlq = sub.add_parser("dlq", help="dead letters").add_subparsers(dest="dlq_command", required=True)
    for name, fn in (("list", cmd_dlq_list), ("replay", cmd_dlq_replay)):
        c = dlq.add_parser(name)
        c.add_argument("--tenant", help="tenant id (default: every tenant)")
        c.add_argument("--endpoint", help="endpoint id")
        c.add_argument("--event-type")
        c.add_argument("--since", type=_iso, help="ISO 8601 time")
        c.add_argument("--until", type=_iso, help="ISO 8601 time")
        c.set_defaults(fn=fn)
        if name == "list":
            c.add_argument("--limit", type=int, default=100)
            c.add_argument("--json", action="store_true", help="one JSON object per line")
        else:
            c.add_argument("--ids", help="comma-separated delivery ids")
            c.add_argument("--dry-run", action="store_true", help="only count")
            c.add_argument("--rate", type=float, help="deliveries per second")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load()
        _setup_logging(settings.log_level, settings.log_format)
        code: int = args.fn(settings, args)
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
        import redis

        print(f"webhooks: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        import redis

        if isinstance(exc, redis.RedisError):
            print(f"webhooks: cannot use Redis: {exc}", file=sys.stderr)
            return 1
        raise
