"""Without a URL or a key, the clients read WEBHOOKS_API_URL and WEBHOOKS_API_KEY; given ones win."""

import asyncio

import pytest

from hookyard_client import AsyncClient, Client
from tests.support.api_server import ApiServer
from tests.support.redis_proc import free_port


def test_without_arguments_the_client_reads_the_environment(
    monkeypatch: pytest.MonkeyPatch, api_server: ApiServer, tenant_key: str
) -> None:
    monkeypatch.setenv("WEBHOOKS_API_URL", api_server.url)
    monkeypatch.setenv("WEBHOOKS_API_KEY", tenant_key)
    with Client() as api:
        assert api.events.send("a.b", {}).id.startswith("evt_")

    async def send() -> str:
        async with AsyncClient() as api:
            return (await api.events.send("a.b", {})).id

    assert asyncio.run(send()).startswith("evt_")


def test_given_arguments_win_over_the_environment(
    monkeypatch: pytest.MonkeyPatch, api_server: ApiServer, tenant_key: str
) -> None:
    monkeypatch.setenv("WEBHOOKS_API_URL", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    monkeypatch.setenv("WEBHOOKS_API_KEY", "whk_not_a_key")
    with Client(api_server.url, tenant_key, max_retries=0) as api:
        assert list(api.endpoints.list()) == []


def test_a_missing_url_or_key_names_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WEBHOOKS_API_URL", raising=False)
    monkeypatch.delenv("WEBHOOKS_API_KEY", raising=False)
    with pytest.raises(ValueError, match="set WEBHOOKS_API_URL"):
        Client()
    monkeypatch.setenv("WEBHOOKS_API_URL", "http://127.0.0.1:8000")
    with pytest.raises(ValueError, match="set WEBHOOKS_API_KEY"):
        Client()
    with pytest.raises(ValueError, match="http:// or https://"):
        Client("127.0.0.1:8000", "whk_x")
