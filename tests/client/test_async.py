"""The asyncio client against the real API: the same resources, awaited and async-iterated."""

import asyncio

import pytest

from hookyard_client import ApiError, AsyncClient, EventInput
from tests.conftest import ADMIN_TOKEN
from tests.support.api_server import ApiServer
from tests.support.receiver import Receiver


def test_async_client_end_to_end(api_server: ApiServer, redis_url: str, receiver: Receiver) -> None:
    async def scenario() -> None:
        async with AsyncClient(api_server.url, ADMIN_TOKEN) as admin:
            tenant = await admin.tenants.create("acme")
            assert [t.id async for t in admin.tenants.list()] == [tenant.id]
        async with AsyncClient(api_server.url, tenant.api_key) as api:
            made = [(await api.endpoints.create(receiver.url(f"ok/{i}"))).id for i in range(5)]
            listed = [e.id async for e in api.endpoints.list(page_size=2)]
            assert listed == sorted(made, reverse=True), "three pages, every endpoint once"
            updated = await api.endpoints.update(made[0], description="first")
            assert updated.description == "first"

            sent = await asyncio.gather(*(api.events.send("a.b", {"i": i}) for i in range(3)))
            batch = await api.events.send_batch([EventInput("a.c", {"j": 1})])
            assert (await api.events.get(batch[0].id)).payload == {"j": 1}
            deliveries = [d async for d in api.deliveries.list(page_size=4)]
            assert len(deliveries) == 5 * 4, "each of 4 events to each of 5 endpoints"
            assert {d.event_id for d in deliveries} == {e.id for e in [*sent, *batch]}
            detail = await api.deliveries.get(deliveries[0].id)
            assert detail.status == "pending"
            assert [d async for d in api.dead_letters.list()] == []
            await api.endpoints.delete(made[0])
            with pytest.raises(ApiError) as gone:
                await api.endpoints.get(made[0])
            assert (gone.value.status, gone.value.code) == (404, "not_found")

    asyncio.run(scenario())
