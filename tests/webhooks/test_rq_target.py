"""Where RQ's trigger queue lives: the settings of RQ's own Redis (a URL or a Sentinel-managed
primary) and the timeouts every RQ client carries (a hung RQ Redis costs a caller seconds)."""

import os
import signal
import time
from pathlib import Path

import pytest
import redis

from tests.support.redis_proc import RedisProc
from webhooks.errors import ConfigError
from webhooks.runtime.connection import RQ_CONNECT_TIMEOUT_S, RQ_SOCKET_TIMEOUT_S, RedisTarget, rq_client
from webhooks.settings import load
from webhooks.wiring import target_of


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"WEBHOOKS_RQ_REDIS_SENTINELS": "127.0.0.1:26379"}, "go together"),
        ({"WEBHOOKS_RQ_REDIS_SENTINEL_MASTER": "rq"}, "go together"),
        (
            {
                "WEBHOOKS_RQ_REDIS_SENTINELS": "127.0.0.1:26379",
                "WEBHOOKS_RQ_REDIS_SENTINEL_MASTER": "rq",
                "WEBHOOKS_RQ_REDIS_URL": "redis://127.0.0.1:7000/0",
            },
            "not both",
        ),
        ({"WEBHOOKS_RQ_REDIS_SENTINELS": "nohost", "WEBHOOKS_RQ_REDIS_SENTINEL_MASTER": "rq"}, "host:port"),
    ],
)
def test_bad_rq_redis_settings_are_refused_clearly(
    env: dict[str, str], says: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=says):
        load()


def test_a_cluster_may_keep_rq_on_a_sentinel_managed_primary(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBHOOKS_REDIS_CLUSTER_NODES", "127.0.0.1:7001,127.0.0.1:7002")
    monkeypatch.setenv("WEBHOOKS_RQ_REDIS_SENTINELS", "rq-sentinel-a:26379, rq-sentinel-b:26379")
    monkeypatch.setenv("WEBHOOKS_RQ_REDIS_SENTINEL_MASTER", "rq")
    target = target_of(load())
    assert target.rq_sentinels == (("rq-sentinel-a", 26379), ("rq-sentinel-b", 26379))
    assert target.rq_master == "rq" and target.rq_apart and not target.rq_url


def test_every_rq_client_has_connect_and_read_timeouts() -> None:
    targets = [
        RedisTarget("redis://127.0.0.1:1/0"),
        RedisTarget("", rq_url="redis://127.0.0.1:1/0"),
        RedisTarget("", sentinels=(("127.0.0.1", 1),), master="m"),
        RedisTarget("", rq_sentinels=(("127.0.0.1", 1),), rq_master="m"),
    ]
    for target in targets:
        kwargs = rq_client(target).connection_pool.connection_kwargs
        assert kwargs["socket_connect_timeout"] == RQ_CONNECT_TIMEOUT_S, target
        assert kwargs["socket_timeout"] == RQ_SOCKET_TIMEOUT_S, target
        assert rq_client(target, timeout_s=0.5).connection_pool.connection_kwargs["socket_timeout"] == 0.5


def test_a_hung_rq_redis_times_out_instead_of_blocking(tmp_path: Path) -> None:
    server = RedisProc(tmp_path / "rq").start()
    assert server.proc is not None
    client = rq_client(RedisTarget("", rq_url=server.url), timeout_s=0.5)
    try:
        assert client.ping()
        os.kill(server.proc.pid, signal.SIGSTOP)
        started = time.monotonic()
        with pytest.raises(redis.TimeoutError):
            client.ping()
        assert time.monotonic() - started < 3, "one timeout, not a retry loop on a hung server"
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)
        client.close()
        server.kill()
