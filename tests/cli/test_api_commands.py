"""The API-facing operator commands (cli/api_commands.py) in process: how they find the API and its admin
token (cli/platform_info.py), and that a listing reads every page of the real API."""

import asyncio
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from cli import api_commands, platform_info
from cli.datalock import DataLock
from cli.main import main
from tests.api.helpers import delivery_ids, now_ms, post_event, settle_async
from tests.conftest import ADMIN_TOKEN
from tests.support.api_server import ApiServer
from webhooks.errors import ConfigError
from webhooks.settings import Settings

TOKEN = "a-token-of-the-platform-0123456789"


@pytest.fixture(autouse=True)
def no_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [k for k in os.environ if k.startswith("WEBHOOKS_")]:
        monkeypatch.delenv(name)


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Path]:
    """A data folder as a live `webhooks up` leaves it: platform.json, its lock held, the token file."""
    lock = DataLock.acquire(tmp_path)
    info = platform_info.PlatformInfo(
        pid=os.getpid(),
        started_at="2026-12-01T00:00:00Z",
        data_dir=str(tmp_path),
        api_url="http://0.0.0.0:8123",
        redis_url="redis://127.0.0.1:1/0",
        redis_server="redis",
    )
    platform_info.write(tmp_path, info)
    (tmp_path / platform_info.ADMIN_TOKEN_FILE).write_text(TOKEN + "\n")
    yield tmp_path
    lock.release()


def test_the_api_of_a_running_up_and_its_token_file(running: Path) -> None:
    found = platform_info.operator_api(Settings(data_dir=running))

    assert found.url == "http://127.0.0.1:8123", "an up listening everywhere is reached on loopback"
    assert found.token == TOKEN and found.source == str(running / "platform.json")
    assert TOKEN not in repr(found)


def test_an_explicit_url_and_token_win(running: Path) -> None:
    s = Settings(data_dir=running, api_url="http://api.example:9000/", admin_token=ADMIN_TOKEN)

    from_setting = platform_info.operator_api(s)
    from_flag = platform_info.operator_api(s, "https://other.example")

    assert (from_setting.url, from_setting.source, from_setting.token) == (
        "http://api.example:9000",
        "WEBHOOKS_API_URL",
        ADMIN_TOKEN,
    )
    assert (from_flag.url, from_flag.source) == ("https://other.example", "--api-url")
    with pytest.raises(ConfigError, match="http:// or https://"):
        platform_info.operator_api(s, "api.example:9000")


def test_no_platform_and_no_token_are_said_so(tmp_path: Path, running: Path) -> None:
    with pytest.raises(platform_info.NoApi, match="no platform found: WEBHOOKS_API_URL is not set"):
        platform_info.operator_api(Settings(data_dir=tmp_path / "empty"))
    (running / platform_info.ADMIN_TOKEN_FILE).unlink()
    with pytest.raises(ConfigError, match="WEBHOOKS_ADMIN_TOKEN is not set"):
        platform_info.operator_api(Settings(data_dir=running))


def test_dlq_list_and_replay_read_every_page_of_the_api(
    api_server: ApiServer,
    api: httpx.Client,
    admin: dict[str, str],
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    run_jobs: Callable[[], int],
) -> None:
    tenant = api.post("/v1/tenants", json={"name": "pages"}, headers=admin).json()
    auth = {"Authorization": f"Bearer {tenant['api_key']}"}
    assert api.post("/v1/endpoints", json={"url": "http://127.0.0.1:9/hook"}, headers=auth).status_code == 201
    dead = delivery_ids([post_event(api, auth) for _ in range(5)])
    assert asyncio.run(settle_async(redis_url, dict.fromkeys(dead, "dead"), now_ms())) == 5
    monkeypatch.setattr(api_commands, "PAGE_SIZE", 2)  # five dead letters: three pages
    monkeypatch.setenv("WEBHOOKS_API_URL", api_server.url)
    monkeypatch.setenv("WEBHOOKS_ADMIN_TOKEN", ADMIN_TOKEN)

    assert main(["dlq", "list", "--json"]) == 0
    listed = [json.loads(line)["id"] for line in capsys.readouterr().out.splitlines()]
    assert main(["dlq", "list", "--limit", "3", "--tenant", tenant["id"]]) == 0
    limited = capsys.readouterr()
    assert main(["dlq", "replay", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)

    assert sorted(listed) == sorted(dead)
    assert "3 dead deliveries shown (more exist; raise --limit)" in limited.err
    assert report["matched"] == 5 and len(report["replay_ids"]) == 1
    assert run_jobs() == 1  # the replay's job (a worker's, in the platform)
    assert api.get("/v1/dead-letters", headers=auth).json()["data"] == []


def test_endpoint_pause_show_and_resume(
    api_server: ApiServer,
    api: httpx.Client,
    admin: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    tenant = api.post("/v1/tenants", json={"name": "cli"}, headers=admin).json()
    auth = {"Authorization": f"Bearer {tenant['api_key']}"}
    ep = api.post("/v1/endpoints", json={"url": "http://127.0.0.1:9/hook"}, headers=auth).json()
    monkeypatch.setenv("WEBHOOKS_API_URL", api_server.url)
    monkeypatch.setenv("WEBHOOKS_ADMIN_TOKEN", ADMIN_TOKEN)

    assert main(["endpoint", "pause", ep["id"], "--tenant", tenant["id"], "--json"]) == 0
    paused = json.loads(capsys.readouterr().out)
    post_event(api, auth)
    assert main(["endpoint", "show", ep["id"], "--tenant", tenant["id"]]) == 0
    shown = capsys.readouterr().out
    assert main(["endpoint", "resume", ep["id"], "--tenant", tenant["id"], "--json"]) == 0
    resumed = json.loads(capsys.readouterr().out)

    assert paused["paused"] is True and paused["health"]["state"] == "paused"
    assert "paused" in shown and ep["url"] in shown
    assert [line.split()[-1] for line in shown.splitlines() if line.strip().startswith("ready")] == ["1"]
    assert (
        resumed["paused"] is False
        and api.get(f"/v1/endpoints/{ep['id']}", headers=auth).json()["paused"] is False
    )
