"""Retries against the real API: a dropped connection, 429 with Retry-After, what is never repeated.

The dropped connection is real: a TCP proxy on loopback (:mod:`tests.support.dropping_proxy`)
hands the request to the API, lets the API answer, and closes the client's connection before
the answer reaches it, on the first connection only.
"""

import asyncio
import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from hookyard_client import ApiConnectionError, ApiError, AsyncClient, Client, EventInput
from tests.client.conftest import Recorder
from tests.conftest import ADMIN_TOKEN
from tests.support.api_server import ApiServer
from tests.support.dropping_proxy import DroppingProxy
from tests.support.receiver import Receiver

FAST = {"backoff_s": 0.05, "max_backoff_s": 0.1}


@pytest.fixture
def proxy(api_server: ApiServer) -> Iterator[DroppingProxy]:
    p = DroppingProxy(api_server.port, drop=1).start()
    yield p
    p.stop()


def withheld_json(proxy: DroppingProxy) -> Any:
    """The body of the answer the proxy kept from the client."""
    (answer,) = proxy.withheld
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] in (b"202", b"204"), head
    return json.loads(body) if body else None


def test_send_after_a_dropped_connection_creates_exactly_one_event(
    client: Client, tenant_key: str, proxy: DroppingProxy, receiver: Receiver
) -> None:
    client.endpoints.create(receiver.url("ok/a"))
    via_proxy = Client(proxy.url, tenant_key, **FAST)
    event = via_proxy.events.send("invoice.paid", {"amount": 1})
    via_proxy.close()
    assert proxy.connections == 2, "the first attempt's connection was dropped; the retry got through"
    assert withheld_json(proxy)["id"] == event.id, "the retry answered the event the first attempt made"
    assert len(list(client.deliveries.list())) == 1, "one event, one delivery: nothing was sent twice"


def test_async_send_after_a_dropped_connection_creates_exactly_one_event(
    client: Client, tenant_key: str, proxy: DroppingProxy, receiver: Receiver
) -> None:
    client.endpoints.create(receiver.url("ok/a"))

    async def send() -> str:
        async with AsyncClient(proxy.url, tenant_key, **FAST) as via_proxy:
            return (await via_proxy.events.send("invoice.paid", {"amount": 1})).id

    event_id = asyncio.run(send())
    assert proxy.connections == 2
    assert withheld_json(proxy)["id"] == event_id
    assert [d.event_id for d in client.deliveries.list()] == [event_id]


def test_batch_after_a_dropped_connection_stores_each_event_once(
    client: Client, tenant_key: str, proxy: DroppingProxy, receiver: Receiver
) -> None:
    client.endpoints.create(receiver.url("ok/a"))
    with Client(proxy.url, tenant_key, **FAST) as via_proxy:
        events = via_proxy.events.send_batch([EventInput("a.b", {"i": i}) for i in range(3)])
    assert [e["id"] for e in withheld_json(proxy)] == [e.id for e in events]
    assert len(list(client.deliveries.list())) == 3


def test_a_call_that_is_not_safe_to_repeat_is_not_retried(admin_client: Client, proxy: DroppingProxy) -> None:
    with Client(proxy.url, ADMIN_TOKEN, **FAST) as via_proxy, pytest.raises(ApiConnectionError) as failed:
        via_proxy.tenants.create("acme")
    assert isinstance(failed.value.__cause__, httpx.TransportError)
    assert proxy.connections == 1, "no second attempt"
    assert [t.name for t in admin_client.tenants.list()] == ["acme"], "the one attempt did create it"


def test_batch_without_ids_is_not_retried(tenant_key: str, proxy: DroppingProxy) -> None:
    with Client(proxy.url, tenant_key, **FAST) as via_proxy, pytest.raises(ApiConnectionError):
        via_proxy.events.send_batch([EventInput("a.b", {})], assign_ids=False)
    assert proxy.connections == 1


def test_delete_whose_answer_was_lost_returns_normally(
    client: Client, tenant_key: str, proxy: DroppingProxy, receiver: Receiver
) -> None:
    ep = client.endpoints.create(receiver.url("ok/a"))
    with Client(proxy.url, tenant_key, **FAST) as via_proxy:
        via_proxy.endpoints.delete(ep.id)  # the retry answers 404: the first attempt deleted it
    assert withheld_json(proxy) is None and proxy.connections == 2
    with pytest.raises(ApiError) as gone:
        client.endpoints.get(ep.id)
    assert gone.value.status == 404


@pytest.fixture
def limited_api(make_api: Callable[..., httpx.Client], admin: dict[str, str]) -> tuple[str, str]:
    """An API whose tenants may make 1 request per second (burst 2); returns its URL and a key."""
    api = make_api(tenant_rate_per_s=1, tenant_burst=2)
    resp = api.post("/v1/tenants", json={"name": "limited"}, headers=admin)
    return str(api.base_url), resp.json()["api_key"]


def test_429_is_retried_no_sooner_than_retry_after(limited_api: tuple[str, str], recorder: Recorder) -> None:
    url, key = limited_api
    with Client(url, key, http=recorder.http, max_retries=5, **FAST) as limited:
        for _ in range(4):
            assert list(limited.endpoints.list()) == []
    limited_answers = [(i, at, ra) for i, (at, status, ra) in enumerate(recorder.answers) if status == 429]
    assert limited_answers, "the rate limit answered 429 at least once"
    for i, at, retry_after in limited_answers:
        assert retry_after is not None and int(retry_after) >= 1
        next_sent_at = recorder.sent[i + 1][0]
        assert next_sent_at - at >= int(retry_after), "the retry waited as long as Retry-After asked"
    assert recorder.answers[-1][1] == 200


def test_retry_after_longer_than_allowed_raises_at_once(
    limited_api: tuple[str, str], recorder: Recorder
) -> None:
    url, key = limited_api
    impatient = Client(url, key, http=recorder.http, max_retry_after_s=0.5, **FAST)
    with impatient, pytest.raises(ApiError) as limited:
        for _ in range(5):
            list(impatient.endpoints.list())
    e = limited.value
    assert (e.status, e.code) == (429, "limit_exceeded") and "rate limit" in e.message
    assert e.retry_after_s is not None and e.retry_after_s >= 1
    assert len(recorder.sent) == 3, "two within the burst, then the 429 raised without a retry"
