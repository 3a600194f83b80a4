"""The API's ``/metrics``, scraped over HTTP before and after requests: the counters move by what
was done, routes are templates (never raw ids), and several uvicorn workers answer as one."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.multiprocess import MultiProcessCollector

from tests.api.helpers import post_event
from tests.conftest import Processes, Tenant
from tests.support.poll import poll
from tests.support.prom import scrape, value
from tests.support.redis_proc import free_port

Endpoint = Callable[..., dict[str, Any]]


def test_ingest_moves_accepted_requests_and_latency(
    api: httpx.Client, tenant: Tenant, make_endpoint: Endpoint
) -> None:
    make_endpoint("http://127.0.0.1:9/hook")
    url = f"{api.base_url}/metrics"
    before = scrape(url)

    for i in range(3):
        post_event(api, tenant.auth, id=f"evt-{i}")
    post_event(api, tenant.auth, id="evt-0")  # the same id again: answered, not accepted again
    batch = api.post(
        "/v1/events/batch",
        json={"events": [{"event_type": "a.b", "payload": {}}, {"event_type": "a.b", "payload": {}}]},
        headers=tenant.auth,
    )
    assert batch.status_code == 202, batch.text
    refused = api.post("/v1/events", json={"payload": {}}, headers=tenant.auth)
    assert refused.status_code == 422

    after = scrape(url)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, labels) - value(before, name, labels)

    assert moved("webhooks_events_accepted_total") == 5
    single = {"route": "/v1/events", "method": "POST"}
    assert moved("webhooks_http_requests_total", **single, status="202") == 4
    assert moved("webhooks_http_requests_total", **single, status="422") == 1
    assert moved("webhooks_http_requests_total", route="/v1/events/batch", status="202") == 1
    assert moved("webhooks_ingest_seconds_count", kind="single") == 5
    assert moved("webhooks_ingest_seconds_count", kind="batch") == 1
    assert moved("webhooks_ingest_seconds_sum", kind="single") > 0
    # every observation is in the +Inf bucket, and a local ingest takes well under 10 s
    assert moved("webhooks_ingest_seconds_bucket", kind="single", le="+Inf") == 5


def test_routes_are_counted_by_template_not_by_path(
    api: httpx.Client, tenant: Tenant, make_endpoint: Endpoint
) -> None:
    ep = make_endpoint("http://127.0.0.1:9/hook")
    url = f"{api.base_url}/metrics"
    before = scrape(url)

    assert api.get(f"/v1/endpoints/{ep['id']}", headers=tenant.auth).status_code == 200
    assert api.get("/v1/endpoints/ep_nosuchendpoint", headers=tenant.auth).status_code == 404
    assert api.get("/no/such/route").status_code == 404

    after = scrape(url)
    template = {"route": "/v1/endpoints/{endpoint_id}", "method": "GET"}
    assert (
        value(after, "webhooks_http_requests_total", {**template, "status": "200"})
        - value(before, "webhooks_http_requests_total", {**template, "status": "200"})
        == 1
    )
    assert (
        value(after, "webhooks_http_requests_total", {**template, "status": "404"})
        - value(before, "webhooks_http_requests_total", {**template, "status": "404"})
        == 1
    )
    unmatched = {"route": "unmatched", "status": "404"}
    assert value(after, "webhooks_http_requests_total", unmatched) > value(
        before, "webhooks_http_requests_total", unmatched
    )
    labels = {v for (_, ls) in after for _, v in ls}
    assert ep["id"] not in labels and "ep_nosuchendpoint" not in labels and tenant.id not in labels


def test_several_api_workers_answer_with_the_totals_of_all(procs: Processes, tmp_path: Path) -> None:
    """WEBHOOKS_API_WORKERS=2: once both workers have accepted events, every scrape (whichever
    worker answers it) shows the total of both (prometheus-client's multiprocess mode)."""
    port = free_port()
    shared = tmp_path / "prom"
    env = {
        "WEBHOOKS_API_PORT": str(port),
        "WEBHOOKS_API_WORKERS": "2",
        "PROMETHEUS_MULTIPROC_DIR": str(shared),
    }
    procs.start("api", env=env)
    base = f"http://127.0.0.1:{port}"
    poll(lambda: _ready(base), what="the API with two workers")
    admin = {"Authorization": f"Bearer {procs.env['WEBHOOKS_ADMIN_TOKEN']}"}
    tenant = httpx.post(f"{base}/v1/tenants", json={"name": "mp"}, headers=admin, timeout=10).json()
    auth = {"Authorization": f"Bearer {tenant['api_key']}"}
    posted = 0

    def both_workers_accepted() -> bool:
        nonlocal posted
        with httpx.Client(base_url=base, timeout=10) as one:  # a new connection: any worker may take it
            post_event(one, auth)
        posted += 1
        return len(_accepting_pids(shared)) >= 2

    poll(both_workers_accepted, timeout_s=30, what="events accepted by both API workers")
    for _ in range(10):
        samples = scrape(f"{base}/metrics")
        assert value(samples, "webhooks_events_accepted_total") == posted
        assert (
            value(samples, "webhooks_http_requests_total", {"route": "/v1/events", "status": "202"}) == posted
        )
        assert value(samples, "webhooks_ingest_seconds_count") == posted


def _accepting_pids(folder: Path) -> set[str]:
    """The processes whose metric files count accepted events."""
    pids = set()
    for path in folder.glob("counter_*.db"):
        for metric in MultiProcessCollector.merge([str(path)]):
            if any(s.name == "webhooks_events_accepted_total" and s.value > 0 for s in metric.samples):
                pids.add(path.stem.removeprefix("counter_"))
    return pids


def _ready(base: str) -> bool:
    try:
        return httpx.get(base + "/readyz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
