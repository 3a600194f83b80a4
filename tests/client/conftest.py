"""Fixtures of the client tests: clients of the real API (uvicorn on a free port, real Redis).

``require_route`` skips a test whose route the running API does not have yet, read from the
API's own OpenAPI document (never from an error answer), so such tests run as soon as the
route lands.
"""

import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from hookyard_client import Client
from tests.conftest import ADMIN_TOKEN
from tests.support.api_server import ApiServer


@pytest.fixture(scope="session")
def openapi_paths(api_server: ApiServer) -> dict[str, Any]:
    paths: dict[str, Any] = httpx.get(f"{api_server.url}/openapi.json", timeout=30).json()["paths"]
    return paths


def _shape(template: str) -> str:
    return re.sub(r"\{[^}]*\}", "{}", template)


@pytest.fixture
def require_route(openapi_paths: dict[str, Any]) -> Callable[[str, str], None]:
    """``require_route("GET", "/v1/replays/{id}")`` skips unless the API documents that route
    (path parameters match whatever their names)."""
    documented = {(_shape(path), method.upper()) for path, ops in openapi_paths.items() for method in ops}

    def require(method: str, template: str) -> None:
        if (_shape(template), method.upper()) not in documented:
            pytest.skip(f"route not built yet: {method} {template}")

    return require


@pytest.fixture
def admin_client(api_server: ApiServer, redis_url: str) -> Iterator[Client]:
    with Client(api_server.url, ADMIN_TOKEN) as client:
        yield client


@pytest.fixture
def make_client(api_server: ApiServer, admin_client: Client) -> Iterator[Callable[..., Client]]:
    """``make_client(name)``: a new tenant and a client with its API key (options pass through)."""
    clients: list[Client] = []

    def make(name: str = "acme", **options: Any) -> Client:
        tenant = admin_client.tenants.create(name)
        clients.append(Client(options.pop("base_url", api_server.url), tenant.api_key, **options))
        return clients[-1]

    yield make
    for c in clients:
        c.close()


@pytest.fixture
def tenant_key(admin_client: Client) -> str:
    """The API key of a new tenant "acme"."""
    return admin_client.tenants.create("acme").api_key


@pytest.fixture
def client(api_server: ApiServer, tenant_key: str) -> Iterator[Client]:
    """A client of the tenant of :func:`tenant_key`."""
    with Client(api_server.url, tenant_key) as c:
        yield c


class Recorder:
    """An httpx client (``.http``) whose event hooks note every request sent and answer received."""

    def __init__(self) -> None:
        self.sent: list[tuple[float, str, str]] = []  # (monotonic time, method, path)
        self.answers: list[tuple[float, int, str | None]] = []  # (time, status, Retry-After)
        self.http = httpx.Client(event_hooks={"request": [self._on_request], "response": [self._on_response]})

    def _on_request(self, request: httpx.Request) -> None:
        self.sent.append((time.monotonic(), request.method, request.url.path))

    def _on_response(self, response: httpx.Response) -> None:
        self.answers.append((time.monotonic(), response.status_code, response.headers.get("retry-after")))


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    rec = Recorder()
    yield rec
    rec.http.close()
