"""The pause a slot move puts on its tenants (webhooks/queueing/reshard.py, lua/_paused.lua), on a real Redis;
the move itself runs on a real cluster in tests/cluster/test_reshard.py."""

import asyncio
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import redis
import redis.asyncio

from tests.conftest import Tenant
from tests.webhooks.test_queue import endpoint, event
from webhooks import keys
from webhooks.queueing import arrivals, queue, reshard, upkeep


def test_a_paused_tenant_gets_503_retry_after_and_its_scripts_change_nothing_while_others_go_on(
    api: httpx.Client,
    make_tenant: Callable[..., Tenant],
    rds: "redis.Redis",
    ar: "redis.asyncio.Redis",
    loop: asyncio.AbstractEventLoop,
) -> None:
    moving, other = make_tenant("moving"), make_tenant("other")
    for t in (moving, other):
        made = api.post("/v1/endpoints", json={"url": "https://example.com/h"}, headers=t.auth)
        assert made.status_code == 201, made.text
    event = {"event_type": "a.b", "payload": {}}
    assert api.post("/v1/events", json=event, headers=moving.auth).status_code == 202

    def state() -> dict[str, object]:
        flag = keys.moving(moving.id)
        return {k: rds.dump(k) for k in rds.scan_iter(keys.tenant_base(moving.id) + "*") if k != flag}

    before = state()

    rds.set(keys.moving(moving.id), reshard.FLAG_VALUE)
    refused = api.post("/v1/events", json=event, headers=moving.auth)
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1", refused.text
    assert refused.json()["error"] == "storage_unavailable" and "moving" in refused.json()["message"]
    with pytest.raises(redis.ResponseError) as caught:
        loop.run_until_complete(queue.lease(ar, moving.id, 10, 10_000, 0))
    assert reshard.is_paused(caught.value)
    ticked = loop.run_until_complete(upkeep.tick(ar, [moving.id, other.id], 1_000))
    assert ticked.paused == 1 and ticked.tenants == 2
    assert rds.zscore(keys.WAKE, moving.id) == 1_000 + upkeep.RETICK_MS, "visited again soon, not forgotten"
    assert state() == before, "a paused tenant's scripts change none of its keys"
    assert api.post("/v1/events", json=event, headers=other.auth).status_code == 202

    rds.delete(keys.moving(moving.id))
    assert api.post("/v1/events", json=event, headers=moving.auth).status_code == 202
    leased = loop.run_until_complete(queue.lease(ar, moving.id, 10, 10_000, 0))
    assert len(leased.deliveries) == 2


def test_cluster_nodes_lines_give_each_primary_its_slots_and_open_slots() -> None:
    node = reshard.Primary("a" * 40, "127.0.0.1", 7000)
    reshard._slot_ranges(["0-2", "5", "[6->-" + "b" * 40 + "]", "[9-<-" + "c" * 40 + "]"], node)
    assert node.slots == [0, 1, 2, 5]
    assert node.migrating == {6: "b" * 40} and node.importing == {9: "c" * 40}
    target = reshard.Primary("b" * 40, "127.0.0.1", 7001)
    assert reshard.open_slots(node, target) == [6]
    assert not reshard.is_paused(redis.ResponseError("ERR something else"))
    script = (Path(reshard.__file__).parent / "lua" / "_paused.lua").read_text()
    assert f"'{reshard.PAUSED}" in script, "the script's error is the one reshard.is_paused knows"


def test_one_paused_tenant_in_an_ingest_call_fails_only_its_own_events(
    rds: "redis.Redis", ar: "redis.asyncio.Redis", loop: asyncio.AbstractEventLoop
) -> None:
    """The API's writer stores many requests in one call; a paused tenant there must not turn the
    other tenants' stored events into errors (a producer would post them twice)."""
    endpoint(rds, "A", "ep_1")
    endpoint(rds, "B", "ep_1")
    rds.set(keys.moving("A"), reshard.FLAG_VALUE)
    events = [event("A", "e1", ["ep_1"]), event("B", "e2", ["ep_1"])]
    got = loop.run_until_complete(arrivals.ingest(ar, events, errors_in_place=True))
    assert reshard.is_paused(got[0]) and got[1] is None
    assert not rds.exists(keys.event("A", "e1")) and rds.exists(keys.event("B", "e2"))
    assert "B" in rds.lrange(keys.ACTIVE, 0, -1), "the stored tenant is activated"
    with pytest.raises(redis.ResponseError) as caught:  # without errors_in_place: raised, B stored
        loop.run_until_complete(arrivals.ingest(ar, [event("A", "e3", ["ep_1"]), event("B", "e4", ["ep_1"])]))
    assert reshard.is_paused(caught.value) and rds.exists(keys.event("B", "e4"))
