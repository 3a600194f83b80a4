"""Operator commands find the platform a ``webhooks up`` in the same folder runs, or say they cannot.

No ``WEBHOOKS_REDIS_URL``, ``WEBHOOKS_API_URL`` or admin token anywhere here: the commands must
read ``<data>/platform.json`` (and the admin-token file beside it).
"""

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.poll import poll
from tests.support.receiver import Receiver
from tests.support.redis_proc import free_port
from tests.support.up import ROOT, UpProcess, clean_env


def cli(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        env=clean_env(WEBHOOKS_DATA_DIR=str(data)),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


@pytest.fixture
def up(tmp_path: Path) -> Iterator[UpProcess]:
    env = clean_env(WEBHOOKS_ALLOW_PRIVATE_TARGETS="true", WEBHOOKS_RETRY_SCHEDULE="0.2")
    proc = UpProcess(tmp_path / "data", free_port(), env)
    proc.start("--workers", "1").wait_summary()
    yield proc
    proc.cleanup()


def test_operator_commands_without_a_platform_say_so(tmp_path: Path) -> None:
    for args in (["dlq", "list"], ["status"], ["tenant", "create", "x"], ["dlq", "replay", "--dry-run"]):
        done = cli(tmp_path / "nothing-here", *args)
        assert done.returncode != 0, (args, done.stdout)
        assert done.stdout == "", "never an empty answer from some other store"
        assert "no platform found" in done.stderr and "platform.json" in done.stderr, done.stderr


def test_a_stale_platform_file_is_not_used(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    (data / "platform.json").write_text(
        json.dumps(
            {
                "pid": int(gone.stdout),
                "started_at": "2026-01-01T00:00:00+00:00",
                "data_dir": str(data),
                "api_url": "http://127.0.0.1:1",
                "redis_url": "redis://127.0.0.1:1/0",
                "redis_server": "redis",
            }
        )
    )
    done = cli(data, "dlq", "list")
    assert done.returncode != 0 and done.stdout == ""
    assert "not running any more" in done.stderr, done.stderr


def test_dlq_and_status_next_to_up(up: UpProcess, receiver: Receiver) -> None:
    data = up.data_dir
    with httpx.Client(base_url=up.url, timeout=10) as api:
        tenant = api.post("/v1/tenants", json={"name": "ops"}, headers=up.admin()).json()
        auth = {"Authorization": f"Bearer {tenant['api_key']}"}
        # Two events, two attempts each (schedule "0.2"): the first four requests fail, so both die;
        # what is replayed later succeeds.
        ep = api.post("/v1/endpoints", json={"url": receiver.url("flaky/4/ops")}, headers=auth).json()
        for n in range(2):
            assert (
                api.post(
                    "/v1/events", json={"event_type": "a.b", "payload": {"n": n}}, headers=auth
                ).status_code
                == 202
            )
        dead = poll(
            lambda: (
                len(api.get("/v1/dead-letters", headers=auth).json()["data"]) == 2
                and api.get("/v1/dead-letters", headers=auth).json()["data"]
            ),
            timeout_s=30,
            what="two dead letters",
        )
    dead_ids = sorted(d["id"] for d in dead)

    listed = cli(data, "dlq", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert sorted(json.loads(line)["id"] for line in listed.stdout.splitlines()) == dead_ids
    # Through the API `up` recorded, not Redis: pointed at an API that is not there, it fails.
    elsewhere = cli(data, "dlq", "list", "--api-url", f"http://127.0.0.1:{free_port()}")
    assert elsewhere.returncode == 1 and elsewhere.stdout == ""
    assert "cannot reach the API" in elsewhere.stderr, elsewhere.stderr
    plain = cli(data, "dlq", "list", "--endpoint", ep["id"])
    assert all(i in plain.stdout for i in dead_ids) and "2 dead deliveries shown" in plain.stderr
    assert cli(data, "dlq", "list", "--status-code", "5xx", "--json").stdout.count("\n") == 2
    assert cli(data, "dlq", "list", "--status-code", "404", "--json").stdout == ""
    assert cli(data, "dlq", "list", "--status-code", "teapot").returncode != 0

    shown = cli(data, "dlq", "show", dead_ids[0])
    assert shown.returncode == 0 and "dead" in shown.stdout and "500" in shown.stdout, shown.stdout
    as_json = json.loads(cli(data, "dlq", "show", dead_ids[0], "--json").stdout)
    with httpx.Client(base_url=up.url, timeout=10) as api:
        assert as_json == api.get(f"/v1/deliveries/{dead_ids[0]}", headers=auth).json()

    status = json.loads(cli(data, "status", "--json").stdout)
    assert status["dead_letters"] == 2
    assert len(status["workers"]) == 1 and status["workers"][0]["last_heartbeat_ms"]
    assert status["scheduler_leader"] and status["redis_server"].split()[0] in ("redis", "valkey")
    text = cli(data, "status").stdout
    assert "dead letters" in text and "leader" in text and "MiB used" in text, text

    dry = cli(data, "dlq", "replay", "--dry-run")
    assert "dry run: 2 dead deliveries match" in dry.stdout, dry.stdout + dry.stderr
    replayed = cli(data, "dlq", "replay", "--endpoint", ep["id"], "--wait", "--wait-s", "60")
    assert replayed.returncode == 0, replayed.stderr
    assert "2 dead deliveries requeued" in replayed.stdout and "settled: 2 succeeded" in replayed.stdout
    after = json.loads(cli(data, "status", "--json").stdout)
    assert after["dead_letters"] == 0
    # RQ's side: the replay ran as a job on the operations queue, and nothing of it is left waiting.
    queues = {q["name"]: q for q in after["rq_queues"]}
    assert set(queues) == {"webhooks", "webhooks-operations"}
    ops = queues["webhooks-operations"]
    assert (ops["queued"], ops["started"], ops["failed"]) == (0, 0, 0)
    assert "webhooks-operations" in cli(data, "status").stdout

    created = cli(data, "tenant", "create", "second")
    assert created.returncode == 0, created.stderr
    found = re.search(r"tenant id: (ten_\w+)", created.stdout)
    assert found, created.stdout
    with httpx.Client(base_url=up.url, timeout=10) as api:
        assert api.get(f"/v1/tenants/{found.group(1)}", headers=up.admin()).json()["name"] == "second"

    assert up.interrupt() == 0
    after = cli(data, "dlq", "list")
    assert after.returncode != 0 and "no platform found" in after.stderr, "a stopped platform is not read"
    assert not os.path.exists(data / "platform.json")
