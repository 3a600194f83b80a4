"""The single-process commands: ``webhooks api``, ``webhooks worker``, ``webhooks scheduler``.

Each checks the data format in Redis first (:func:`webhooks.queueing.dataformat.ensure`, docs/upgrading.md).
"""

import argparse
import logging
from typing import TYPE_CHECKING

import redis

from webhooks.errors import ConfigError
from webhooks.queueing import dataformat
from webhooks.runtime.connection import sync_client, warn_if_not_durable
from webhooks.runtime.replication import AckPolicy, startup_problems
from webhooks.settings import Settings
from webhooks.wiring import box_of, target_of

if TYPE_CHECKING:  # imported where used: the API's metrics must not load before its multiprocess folder
    from workers.engine import EngineConfig
    from workers.scheduler import SchedulerConfig

log = logging.getLogger("webhooks")


def engine_config_of(s: Settings) -> "EngineConfig":
    from workers.engine import EngineConfig

    return EngineConfig(
        schedule=s.schedule,
        request_timeout_s=s.request_timeout_s,
        concurrency=s.worker_concurrency,
        lease_ttl_s=s.lease_ttl_s,
        retention_ms=s.retention_ms,
        breaker=s.breaker,
        ops_window_ms=s.operational.window_ms if s.operational else 0,
    )


def scheduler_config_of(s: Settings) -> "SchedulerConfig":
    from workers.scheduler import SchedulerConfig

    return SchedulerConfig(
        request_timeout_s=s.request_timeout_s,
        retention_ms=s.retention_ms,
        memory_high_share=s.memory_high_watermark,
        trim_dead_letters=s.trim_dead_letters,
        ops_target=s.operational,
        box=box_of(s) if s.operational else None,
    )


def check_acknowledgement(conn: "redis.Redis", ack: AckPolicy) -> None:
    """Refuse to start (:class:`ConfigError`) when the server cannot give the acknowledgement the
    settings ask for (``WEBHOOKS_ACK_FSYNC`` without ``WAITAOF``); warn when fewer replicas than
    ``WEBHOOKS_ACK_REPLICAS`` are connected now; log the mode."""
    refusals, warnings = startup_problems(conn, ack)
    if refusals:
        raise ConfigError("; ".join(refusals))
    for warning in warnings:
        log.warning("ACKNOWLEDGEMENT WARNING: %s", warning)
    log.info("acknowledgement: writes %s", ack.describe())


def cmd_api(s: Settings, _: argparse.Namespace) -> int:
    import uvicorn

    if s.admin_token is None:
        raise ConfigError("WEBHOOKS_ADMIN_TOKEN: the API refuses to start without an admin token")
    if s.api_workers > 1:
        from webhooks.runtime.multiproc import use_multiprocess_dir

        use_multiprocess_dir()  # every uvicorn worker's metrics in one /metrics answer
    try:
        conn = sync_client(target_of(s))
        dataformat.ensure(conn)  # refuses data newer than this code; migrates older data first
        warn_if_not_durable(conn)
        check_acknowledgement(conn, s.ack)
    except redis.RedisError as exc:
        log.warning(
            "Redis is not reachable yet (%s): the API answers 503 until it is (and stops if it then "
            "holds data of a newer format: api/format_watch.py)",
            type(exc).__name__,
        )
    uvicorn.run(
        "api.main:app",
        factory=True,
        host=s.api_host,
        port=s.api_port,
        workers=s.api_workers,
        loop="uvloop",
        http="httptools",
        log_level=s.log_level.lower(),
        log_config=None,  # uvicorn's records go through our handler (webhooks.runtime.logs)
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
        scheduler_config=scheduler_config_of(s),
        proxy_url=s.proxy_url.get_secret_value() if s.proxy_url else None,
        metrics_port=s.metrics_port,
        metrics_host=s.metrics_host,
        per_endpoint_metrics=s.metrics_per_endpoint,
    )
    return 0


def cmd_scheduler(s: Settings, _: argparse.Namespace) -> int:
    from workers.process import run_scheduler

    run_scheduler(target_of(s), scheduler_config_of(s), s.metrics_port, s.metrics_host)
    return 0
