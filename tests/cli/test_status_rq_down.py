"""``webhooks status`` while RQ's own Redis (``WEBHOOKS_RQ_REDIS_URL``) is down (cli/status.py).

A real second redis-server for RQ, stopped: the command still shows what the platform's Redis
holds (the queue, the unhealthy endpoints, Redis' memory), says RQ's Redis does not answer and what
that means, and exits 0. Started again, RQ's side is shown as ever.
"""

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import ROOT, Tenant
from tests.support.redis_proc import RedisProc


def _status(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", "status", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_status_shows_the_platform_and_says_rqs_redis_is_unreachable(
    api: httpx.Client,
    tenant: Tenant,
    make_endpoint: Callable[..., dict[str, Any]],
    env: dict[str, str],
    tmp_path: Path,
) -> None:
    make_endpoint("http://127.0.0.1:9/a")  # no worker runs: its deliveries wait, ready
    body = {"events": [{"event_type": "t.x", "payload": {"i": i}} for i in range(3)]}
    assert api.post("/v1/events/batch", json=body, headers=tenant.auth).status_code == 202
    disabled = make_endpoint("http://127.0.0.1:9/b")
    patched = api.patch(f"/v1/endpoints/{disabled['id']}", json={"disabled": True}, headers=tenant.auth)
    assert patched.status_code == 200, patched.text

    rq = RedisProc(tmp_path / "rq").start()
    env = {**env, "WEBHOOKS_RQ_REDIS_URL": rq.url}
    try:
        rq.stop()
        where = f"127.0.0.1:{rq.port}"

        shown = _status(env, "--json")
        assert shown.returncode == 0, shown.stderr
        status = json.loads(shown.stdout)
        assert status["ready"] == 3, status  # to the first endpoint (the second came after)
        assert [e["endpoint_id"] for e in status["endpoints_not_healthy"]] == [disabled["id"]]
        assert status["redis_server"].startswith(("redis", "valkey"))
        assert where in status["rq_unreachable"] and "does not answer" in status["rq_unreachable"]
        assert status["workers"] == [] and status["rq_queues"] == [] and status["drain_jobs"] is None
        assert "RQ's Redis is unreachable" in shown.stderr

        text = _status(env)
        assert text.returncode == 0, text.stderr
        out = " ".join(text.stdout.split())  # the tables wrap long cells
        assert "RQ's Redis: UNREACHABLE" in out and where in out, out
        assert "Deliveries go on" in out and "wait until RQ's Redis answers again" in out, out
        assert "unknown (RQ's Redis is unreachable)" in out, out
        assert "3 (oldest waiting" in out, "the queue is shown from the platform's Redis"
        assert disabled["id"] in out, "the unhealthy endpoints too"
        assert "workers (" not in out and "RQ queues" not in out, "RQ's side is not shown as empty"
        assert "RQ's Redis is unreachable" in text.stderr

        rq.start()
        shown = _status(env, "--json")
        assert shown.returncode == 0, shown.stderr
        status = json.loads(shown.stdout)
        assert status["rq_unreachable"] is None and status["drain_jobs"] == 0
        assert [q["name"] for q in status["rq_queues"]] == ["webhooks", "webhooks-operations"]
        assert shown.stderr == ""
    finally:
        rq.stop()
