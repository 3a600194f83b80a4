"""The console script as a new user runs it."""

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from tests.conftest import ADMIN_TOKEN, ROOT
from tests.support.api_server import ApiServer
from tests.support.poll import poll
from tests.support.receiver import Receiver
from tests.support.redis_proc import free_port
from tests.support.up import clean_env as up_env


def clean_env(**extra: str) -> dict[str, str]:
    return up_env(PYTHONPATH=str(ROOT), **extra)


def run(*args: str, env: dict[str, str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def test_up_runs_everything_on_an_embedded_redis_and_stops_cleanly(
    tmp_path: Path, receiver: Receiver
) -> None:
    port = free_port()
    env = clean_env(
        WEBHOOKS_DATA_DIR=str(tmp_path / "data"),
        WEBHOOKS_API_PORT=str(port),
        WEBHOOKS_ALLOW_PRIVATE_TARGETS="true",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", "up"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
        start_new_session=True,
    )
    try:
        lines: list[str] = []
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "admin token:" in line:
                break
        text = "".join(lines)
        assert f"http://127.0.0.1:{port}" in text, text
        token = re.search(r"admin token:\s+(\S+)", text).group(1)  # type: ignore[union-attr]
        admin = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as api:
            tenant = api.post("/v1/tenants", json={"name": "up"}, headers=admin).json()
            auth = {"Authorization": f"Bearer {tenant['api_key']}"}
            ep = api.post("/v1/endpoints", json={"url": receiver.url("ok/up")}, headers=auth).json()
            assert (
                api.post("/v1/events", json={"event_type": "a.b", "payload": {}}, headers=auth).status_code
                == 202
            )
            (got,) = poll(lambda: receiver.to("ok/up"), timeout_s=30, what="a delivery through `webhooks up`")
            Webhook(ep["secret"]).verify(got.body, got.headers)
        assert (tmp_path / "data" / "redis").is_dir(), "the embedded Redis keeps its AOF under the data dir"
        assert any((tmp_path / "data" / "redis").rglob("*.aof")), "AOF is on"
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=40)
        assert proc.returncode == 0, out
        assert "stopped" in out
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("WEBHOOKS_REQUEST_TIMEOUT_S", "soon"),
        ("WEBHOOKS_RETRY_SCHEDULE", "5,-1"),
        ("WEBHOOKS_ADMIN_TOKEN", "short"),
        ("WEBHOOKS_API_PORT", "99999"),
        ("WEBHOOKS_REDIS_SENTINELS", "a:1"),
    ],
)
def test_a_bad_setting_stops_the_process_with_one_line_naming_it(var: str, value: str) -> None:
    result = run("api", env=clean_env(**{var: value}))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and var in lines[0], result.stderr
    if var == "WEBHOOKS_ADMIN_TOKEN":
        assert value not in lines[0], "the rejected token is not echoed"


def test_api_refuses_to_start_without_an_admin_token() -> None:
    result = run("api", env=clean_env())
    assert result.returncode == 2 and "WEBHOOKS_ADMIN_TOKEN" in result.stderr


def api_env(url: str, token: str = ADMIN_TOKEN) -> dict[str, str]:
    """The operator commands pointed at an API explicitly, with the admin token."""
    return clean_env(WEBHOOKS_API_URL=url, WEBHOOKS_ADMIN_TOKEN=token)


def test_tenant_create_and_dlq_commands_call_the_api(
    api_server: ApiServer, api: httpx.Client, admin: dict[str, str]
) -> None:
    env = api_env(api_server.url)
    created = run("tenant", "create", "acme", env=env)
    assert created.returncode == 0, created.stderr
    found = re.search(r"tenant id: (ten_\w+)", created.stdout)
    assert found and re.search(r"api key:\s+whk_\S+", created.stdout), created.stdout
    got = api.get(f"/v1/tenants/{found.group(1)}", headers=admin)
    assert got.status_code == 200 and got.json()["name"] == "acme", "the tenant is the API's"
    as_json = json.loads(run("tenant", "create", "beta", "--json", env=env).stdout)
    assert api.get(f"/v1/tenants/{as_json['id']}", headers=admin).json()["name"] == "beta"
    assert (
        api.get("/v1/endpoints", headers={"Authorization": f"Bearer {as_json['api_key']}"}).status_code == 200
    )

    listed = run("dlq", "list", env=env)
    assert listed.returncode == 0 and "0 dead deliveries shown" in listed.stderr, listed.stderr
    dry = run("dlq", "replay", "--dry-run", env=env)
    assert dry.returncode == 0 and "dry run: 0 dead deliveries match" in dry.stdout
    bad = run("dlq", "list", "--since", "yesterday", env=env)
    assert bad.returncode == 2 and "not an ISO 8601 time" in bad.stderr

    # --api-url names the API without WEBHOOKS_API_URL.
    no_url = clean_env(WEBHOOKS_ADMIN_TOKEN=ADMIN_TOKEN)
    flag = run("tenant", "create", "gamma", "--api-url", api_server.url, env=no_url)
    assert flag.returncode == 0 and "tenant id: ten_" in flag.stdout, flag.stderr


def test_operator_commands_with_the_api_down_exit_non_zero_saying_so() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    for args in (["tenant", "create", "x"], ["dlq", "list"], ["dlq", "show", "dlv_x"], ["dlq", "replay"]):
        done = run(*args, env=api_env(url))
        assert done.returncode == 1, (args, done.stdout, done.stderr)
        assert done.stdout == "", "never an empty answer"
        (line,) = done.stderr.strip().splitlines()
        assert f"cannot reach the API at {url} (from WEBHOOKS_API_URL)" in line, line


def test_an_api_error_is_one_line_and_a_non_zero_exit(api_server: ApiServer, tmp_path: Path) -> None:
    missing = run("dlq", "show", "dlv_nothere", env=api_env(api_server.url))
    assert missing.returncode == 1 and missing.stdout == ""
    (line,) = missing.stderr.strip().splitlines()
    assert f"the API at {api_server.url}" in line and "404 not_found" in line and "no such delivery" in line

    teapot = run("dlq", "list", "--status-code", "teapot", env=api_env(api_server.url))
    assert teapot.returncode == 1 and "422" in teapot.stderr and "status_code" in teapot.stderr

    wrong = "wrong-admin-token-0123456789"
    refused = run("dlq", "list", env=api_env(api_server.url, wrong))
    assert refused.returncode == 1 and "401" in refused.stderr and wrong not in refused.stderr

    # No token anywhere: the command says which setting to give, before calling anything.
    env = clean_env(WEBHOOKS_API_URL=api_server.url, WEBHOOKS_DATA_DIR=str(tmp_path))
    tokenless = run("dlq", "list", env=env)
    assert tokenless.returncode == 2 and "WEBHOOKS_ADMIN_TOKEN" in tokenless.stderr
