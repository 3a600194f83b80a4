"""Liveness, readiness and metrics; with Redis unreachable the API answers 503, never 500."""

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from tests.api.helpers import assert_error, post_event
from tests.conftest import ADMIN_TOKEN, api_config
from tests.support.api_server import ApiServer
from tests.support.redis_proc import free_port
from webhooks import __version__


@pytest.fixture
def api_without_redis() -> Iterator[httpx.Client]:
    """An API server whose Redis address has nothing listening."""
    server = ApiServer(api_config(f"redis://127.0.0.1:{free_port()}/0")).start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            yield client
    finally:
        server.stop()


def test_healthz_and_readyz(api: httpx.Client) -> None:
    assert api.get("/healthz").json() == {"status": "ok"}
    assert api.get("/readyz").json() == {"status": "ready"}


def test_metrics_are_prometheus_text_from_prometheus_client(
    api: httpx.Client, tenant: Any, make_endpoint: Callable[..., dict[str, Any]]
) -> None:
    make_endpoint("http://127.0.0.1:9/hook")
    post_event(api, tenant.auth)

    resp = api.get("/metrics")

    assert resp.status_code == 200
    assert resp.headers["content-type"] == CONTENT_TYPE_LATEST
    families = {f.name: f for f in text_string_to_metric_families(resp.text)}
    assert families["webhooks_events_accepted"].type == "counter"
    assert families["webhooks_ingest_seconds"].type == "histogram"
    assert families["webhooks_build_info"].samples[0].labels["version"] == __version__


def test_without_redis_readyz_is_503_and_liveness_is_200(api_without_redis: httpx.Client) -> None:
    ready = api_without_redis.get("/readyz")

    assert ready.status_code == 503
    assert ready.json()["status"] == "unavailable"
    assert api_without_redis.get("/healthz").status_code == 200


def test_without_redis_metrics_still_answer(api_without_redis: httpx.Client) -> None:
    """The API's metrics are its own (no Redis read): they are there when Redis is not."""
    resp = api_without_redis.get("/metrics")

    assert resp.status_code == 200
    assert "webhooks_http_requests_total" in resp.text


@pytest.mark.parametrize(
    ("method", "path", "token"),
    [
        ("GET", "/v1/tenants", ADMIN_TOKEN),
        ("POST", "/v1/tenants", ADMIN_TOKEN),
        ("GET", "/v1/endpoints", "whk_" + "a" * 43),
    ],
)
def test_without_redis_calls_are_503_not_500(
    api_without_redis: httpx.Client, method: str, path: str, token: str
) -> None:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body = {"name": "x"} if method == "POST" else None

    resp = api_without_redis.request(method, path, json=body, headers=headers)

    out = assert_error(resp, 503)
    assert out["error"] == "storage_unavailable"
