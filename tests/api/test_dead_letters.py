"""Dead letters: listing with filters and cursors, replay (dry run, by filter, by ids, rate limited)."""

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
import redis

from tests.api.helpers import assert_error, dead_ids, delivery_ids, due_ids, now_ms, post_event, ready_ids
from webhooks.timefmt import iso_from_ms

URL = "http://127.0.0.1:9/hook"
HOUR_MS = 3600 * 1000


@dataclass
class Graveyard:
    """Dead deliveries of two endpoints and two event types, dead at three known instants."""

    ep1: str
    ep2: str
    times: list[int]  # ms, oldest first
    dead: dict[str, tuple[str, str, int]]  # delivery id -> (endpoint id, event type, dead at ms)
    alive: list[str]  # deliveries of the same tenant that are not dead


@pytest.fixture
def graveyard(
    api: httpx.Client,
    tenant: Any,
    make_endpoint: Callable[..., dict[str, Any]],
    settle: Callable[..., int],
) -> Graveyard:
    ep1, ep2 = make_endpoint(URL + "/1")["id"], make_endpoint(URL + "/2")["id"]
    base = now_ms() - 10 * HOUR_MS
    times = [base, base + HOUR_MS, base + 2 * HOUR_MS]
    dead: dict[str, tuple[str, str, int]] = {}
    for at, event_type in zip(times, ["invoice.paid", "user.created", "invoice.paid"], strict=True):
        event = post_event(api, tenant.auth, event_type)
        kinds = {d["id"]: "dead" for d in event["deliveries"]}
        assert settle(kinds, at_ms=at) == 2
        dead.update({d["id"]: (d["endpoint_id"], event_type, at) for d in event["deliveries"]})
    survivor = post_event(api, tenant.auth, "invoice.paid")
    settle({d["id"]: "retrying" for d in survivor["deliveries"]}, at_ms=times[-1])
    return Graveyard(ep1, ep2, times, dead, delivery_ids([survivor]))


def list_dead(api: httpx.Client, auth: dict[str, str], **params: Any) -> tuple[list[dict[str, Any]], int]:
    out: list[dict[str, Any]] = []
    cursor = None
    for pages in range(1, 1000):
        query = {**params, **({"cursor": cursor} if cursor else {})}
        resp = api.get("/v1/dead-letters", params=query, headers=auth)
        assert resp.status_code == 200, resp.text
        out += resp.json()["data"]
        cursor = resp.json()["next_cursor"]
        if cursor is None:
            return out, pages
    raise AssertionError("pagination does not end")


def newest_first(g: Graveyard, keep: Callable[[str, str, int], bool] = lambda *_: True) -> list[str]:
    chosen = [(at, d) for d, (ep, ty, at) in g.dead.items() if keep(ep, ty, at)]
    return [d for _, d in sorted(chosen, reverse=True)]


def test_list_dead_letters_newest_first(api: httpx.Client, tenant: Any, graveyard: Graveyard) -> None:
    resp = api.get("/v1/dead-letters", headers=tenant.auth)

    assert resp.status_code == 200
    page = resp.json()
    assert page["next_cursor"] is None
    assert [d["id"] for d in page["data"]] == newest_first(graveyard)
    for d in page["data"]:
        ep, ty, at = graveyard.dead[d["id"]]
        assert d["status"] == "dead" and d["endpoint_id"] == ep and d["event_type"] == ty
        assert d["dead_at"] == iso_from_ms(at)
        assert d["tenant_id"] == tenant.id


def test_filter_by_endpoint_id(api: httpx.Client, tenant: Any, graveyard: Graveyard) -> None:
    items, _ = list_dead(api, tenant.auth, endpoint_id=graveyard.ep2)

    assert [d["id"] for d in items] == newest_first(graveyard, lambda ep, ty, at: ep == graveyard.ep2)


def test_filter_by_event_type(api: httpx.Client, tenant: Any, graveyard: Graveyard) -> None:
    items, _ = list_dead(api, tenant.auth, event_type="user.created")

    assert [d["id"] for d in items] == newest_first(graveyard, lambda ep, ty, at: ty == "user.created")
    assert list_dead(api, tenant.auth, event_type="never.seen")[0] == []


def test_filter_by_since_and_until(api: httpx.Client, tenant: Any, graveyard: Graveyard) -> None:
    t0, t1, t2 = graveyard.times

    since, _ = list_dead(api, tenant.auth, since=iso_from_ms(t1))
    until, _ = list_dead(api, tenant.auth, until=iso_from_ms(t1 - 1))
    between, _ = list_dead(api, tenant.auth, since=iso_from_ms(t0 + 1), until=iso_from_ms(t2 - 1))
    offset, _ = list_dead(api, tenant.auth, since=_with_offset(t1))

    assert [d["id"] for d in since] == newest_first(graveyard, lambda ep, ty, at: at >= t1)
    assert [d["id"] for d in until] == newest_first(graveyard, lambda ep, ty, at: at == t0)
    assert [d["id"] for d in between] == newest_first(graveyard, lambda ep, ty, at: at == t1)
    assert [d["id"] for d in offset] == [d["id"] for d in since]  # a +02:00 offset means the same instant


def _with_offset(ms: int) -> str:
    local = datetime.fromtimestamp(ms / 1000, tz=UTC).astimezone(timezone(timedelta(hours=2)))
    return local.isoformat(timespec="milliseconds")


def test_filters_combine(api: httpx.Client, tenant: Any, graveyard: Graveyard) -> None:
    t2 = graveyard.times[2]

    items, _ = list_dead(
        api, tenant.auth, endpoint_id=graveyard.ep1, event_type="invoice.paid", since=iso_from_ms(t2)
    )

    assert [d["id"] for d in items] == newest_first(
        graveyard, lambda ep, ty, at: ep == graveyard.ep1 and ty == "invoice.paid" and at >= t2
    )
    assert len(items) == 1


def test_filter_by_last_status_code(
    api: httpx.Client, tenant: Any, make_endpoint: Callable[..., dict[str, Any]], settle: Callable[..., int]
) -> None:
    make_endpoint(URL)
    (a,), (b,), (c,) = (delivery_ids([post_event(api, tenant.auth)]) for _ in range(3))
    assert settle({a: "dead", b: "gone", c: "dead_timeout"}) == 3  # last answers 500, 410, none

    def listed(**params: str) -> set[str]:
        return {d["id"] for d in list_dead(api, tenant.auth, **params)[0]}

    assert listed() == {a, b, c}
    assert listed(status_code="500") == listed(status_code="5xx") == {a}
    assert listed(status_code="4XX") == listed(status_code="410") == {b}
    assert listed(status_code="none") == {c}
    assert listed(status_code="404") == set()
    dry = api.post(
        "/v1/dead-letters/replay", json={"status_code": "4xx", "dry_run": True}, headers=tenant.auth
    )
    assert dry.json()["matched"] == 1
    for bad in ("teapot", "600", "6xx", "50", ""):
        resp = api.get("/v1/dead-letters", params={"status_code": bad}, headers=tenant.auth)
        assert_error(resp, 422, "status_code")
    assert_error(
        api.post("/v1/dead-letters/replay", json={"status_code": "5x"}, headers=tenant.auth),
        422,
        "status_code",
    )
    assert listed() == {a, b, c}, "a refused replay changes nothing"


@pytest.mark.parametrize("limit", [1, 2, 4, 6])
def test_cursor_pagination_visits_each_once(
    api: httpx.Client, tenant: Any, graveyard: Graveyard, limit: int
) -> None:
    items, pages = list_dead(api, tenant.auth, limit=limit)

    assert [d["id"] for d in items] == newest_first(graveyard)
    assert pages == -(-len(graveyard.dead) // limit)  # the last full page has no cursor


def test_cursor_pagination_with_a_filter(api: httpx.Client, tenant: Any, graveyard: Graveyard) -> None:
    items, pages = list_dead(api, tenant.auth, limit=1, event_type="invoice.paid")

    assert [d["id"] for d in items] == newest_first(graveyard, lambda ep, ty, at: ty == "invoice.paid")
    assert pages == 4


def test_many_dead_at_the_same_instant_are_all_listed(
    api: httpx.Client, tenant: Any, make_endpoint: Callable[..., dict[str, Any]], settle: Callable[..., int]
) -> None:
    """A worker records a whole batch at one instant: 600 dead letters share one score."""
    make_endpoint(URL)
    events = [{"event_type": "bulk.thing", "payload": i} for i in range(600)]
    created = api.post("/v1/events/batch", json={"events": events}, headers=tenant.auth).json()
    ids = delivery_ids(created)
    assert settle(dict.fromkeys(ids, "dead"), at_ms=now_ms() - 1000) == 600

    one_page, _ = list_dead(api, tenant.auth, limit=1000)
    paged, pages = list_dead(api, tenant.auth, limit=250)

    assert sorted(d["id"] for d in one_page) == sorted(ids)
    assert [d["id"] for d in paged] == [d["id"] for d in one_page]
    assert pages == 3
    dry = api.post("/v1/dead-letters/replay", json={"dry_run": True}, headers=tenant.auth).json()
    assert dry["matched"] == 600


def test_dead_letters_of_other_tenants_are_not_listed(
    api: httpx.Client, graveyard: Graveyard, make_tenant: Callable[..., Any]
) -> None:
    other = make_tenant("other")

    assert list_dead(api, other.auth)[0] == []
    assert_error(
        api.get("/v1/dead-letters", params={"endpoint_id": "x", "tenant_id": "ten_x"}, headers=other.auth),
        404,
    )


def test_replay_dry_run_counts_and_changes_nothing(
    api: httpx.Client, tenant: Any, graveyard: Graveyard, rds: "redis.Redis"
) -> None:
    before = (ready_ids(rds), due_ids(rds), dead_ids(rds))

    everything = api.post("/v1/dead-letters/replay", json={"dry_run": True}, headers=tenant.auth)
    filtered = api.post(
        "/v1/dead-letters/replay", json={"dry_run": True, "endpoint_id": graveyard.ep1}, headers=tenant.auth
    )

    assert everything.status_code == 202, everything.text
    assert everything.json() == {"replay_id": None, "matched": 6, "dry_run": True}
    assert filtered.json()["matched"] == 3
    assert (
        ready_ids(rds),
        due_ids(rds),
        dead_ids(rds),
    ) == before
    assert [d["id"] for d in list_dead(api, tenant.auth)[0]] == newest_first(graveyard)
    for d in graveyard.dead:
        assert rds.hget(f"wh:{{t:{tenant.id}}}:d:{d}", "s") == "dead"


def test_replay_by_filter_requeues_the_matching_dead_letters(
    api: httpx.Client, tenant: Any, graveyard: Graveyard, rds: "redis.Redis", run_jobs: Callable[[], int]
) -> None:
    matching = newest_first(graveyard, lambda ep, ty, at: ep == graveyard.ep2 and ty == "invoice.paid")

    resp = api.post(
        "/v1/dead-letters/replay",
        json={"endpoint_id": graveyard.ep2, "event_type": "invoice.paid"},
        headers=tenant.auth,
    )

    assert resp.status_code == 202, resp.text
    body = resp.json()
    assert body["matched"] == 2 and body["dry_run"] is False and body["replay_id"].startswith("rpl_")
    # Answered before anything is requeued: the record exists, its job waits on RQ's queue.
    record = api.get(f"/v1/replays/{body['replay_id']}", headers=tenant.auth).json()
    assert (record["state"], record["matched"], record["requeued"]) == ("matching", 2, 0)
    assert ready_ids(rds) == []
    assert run_jobs() == 1
    record = api.get(f"/v1/replays/{body['replay_id']}", headers=tenant.auth).json()
    assert (record["state"], record["matched"], record["requeued"]) == ("delivering", 2, 2)
    assert sorted(ready_ids(rds)) == sorted(matching)
    for d in matching:
        detail = api.get(f"/v1/deliveries/{d}", headers=tenant.auth).json()
        assert detail["status"] == "pending" and detail["dead_at"] is None
        assert d not in dead_ids(rds)
    remaining = [d["id"] for d in list_dead(api, tenant.auth)[0]]
    assert remaining == [d for d in newest_first(graveyard) if d not in matching]
    # Replaying again finds nothing more to do.
    run_jobs()
    again = api.post(
        "/v1/dead-letters/replay",
        json={"endpoint_id": graveyard.ep2, "event_type": "invoice.paid"},
        headers=tenant.auth,
    )
    assert again.json()["matched"] == 0


def test_replay_by_time_window(
    api: httpx.Client, tenant: Any, graveyard: Graveyard, rds: "redis.Redis", run_jobs: Callable[[], int]
) -> None:
    t0, t1, _ = graveyard.times

    resp = api.post(
        "/v1/dead-letters/replay",
        json={"since": iso_from_ms(t0), "until": iso_from_ms(t1)},
        headers=tenant.auth,
    )

    assert resp.json()["matched"] == 4
    run_jobs()
    assert sorted(ready_ids(rds)) == sorted(newest_first(graveyard, lambda ep, ty, at: at <= t1))


def test_replay_by_ids(
    api: httpx.Client, tenant: Any, graveyard: Graveyard, rds: "redis.Redis", run_jobs: Callable[[], int]
) -> None:
    chosen = newest_first(graveyard)[:2]
    ids = [*chosen, chosen[0], graveyard.alive[0]]  # a repeat, and one that is not dead

    dry = api.post("/v1/dead-letters/replay", json={"ids": ids, "dry_run": True}, headers=tenant.auth)
    resp = api.post("/v1/dead-letters/replay", json={"ids": ids}, headers=tenant.auth)

    assert dry.json()["matched"] == 2
    assert resp.status_code == 202 and resp.json()["matched"] == 2
    run_jobs()
    assert sorted(ready_ids(rds)) == sorted(chosen)
    assert api.get(f"/v1/deliveries/{graveyard.alive[0]}", headers=tenant.auth).json()["status"] == "retrying"
    assert len(list_dead(api, tenant.auth)[0]) == len(graveyard.dead) - 2


def test_replay_by_unknown_id_is_404_and_replays_nothing(
    api: httpx.Client, tenant: Any, graveyard: Graveyard, rds: "redis.Redis"
) -> None:
    ids = [newest_first(graveyard)[0], "dlv_01m8000000000000000000000a"]

    resp = api.post("/v1/dead-letters/replay", json={"ids": ids}, headers=tenant.auth)

    assert_error(resp, 404, "ids.1")
    assert len(ready_ids(rds)) == 0
    assert len(list_dead(api, tenant.auth)[0]) == len(graveyard.dead)


def test_replay_with_rate_spaces_deliveries_in_the_due_set(
    api: httpx.Client, tenant: Any, graveyard: Graveyard, rds: "redis.Redis", run_jobs: Callable[[], int]
) -> None:
    started = now_ms()

    resp = api.post("/v1/dead-letters/replay", json={"rate_per_s": 4}, headers=tenant.auth)

    assert resp.json()["matched"] == 6
    run_jobs()
    assert len(ready_ids(rds)) == 0
    due = {m: int(s) for m, s in due_ids(rds) if m in graveyard.dead}
    assert set(due) == set(graveyard.dead)
    scores = sorted(due.values())
    assert started - 1000 <= scores[0] <= now_ms() + 1000
    assert [b - a for a, b in itertools.pairwise(scores)] == [250] * 5
    for d, score in due.items():
        detail = api.get(f"/v1/deliveries/{d}", headers=tenant.auth).json()
        assert detail["status"] == "pending" and detail["next_attempt_at"] == iso_from_ms(score)


@pytest.mark.parametrize("rate", [0, -1, 1e-9, 100001, "fast"])
def test_replay_rate_is_validated(api: httpx.Client, tenant: Any, graveyard: Graveyard, rate: Any) -> None:
    resp = api.post("/v1/dead-letters/replay", json={"rate_per_s": rate}, headers=tenant.auth)

    assert_error(resp, 422, "rate_per_s")
    assert len(list_dead(api, tenant.auth)[0]) == len(graveyard.dead)


def test_admin_lists_and_replays_dead_letters_of_every_tenant(
    api: httpx.Client,
    admin: dict[str, str],
    tenant: Any,
    graveyard: Graveyard,
    make_tenant: Callable[..., Any],
    settle: Callable[..., int],
    rds: "redis.Redis",
    run_jobs: Callable[[], int],
) -> None:
    other = make_tenant("other")
    api.post("/v1/endpoints", json={"url": URL}, headers=other.auth)
    (theirs,) = delivery_ids([post_event(api, other.auth)])
    settle({theirs: "dead"})

    everyone, _ = list_dead(api, admin)
    only_other, _ = list_dead(api, admin, tenant_id=other.id)
    dry = api.post("/v1/dead-letters/replay", json={"dry_run": True}, headers=admin).json()
    replayed = api.post("/v1/dead-letters/replay", params={"tenant_id": other.id}, json={}, headers=admin)

    assert {d["id"] for d in everyone} == {*graveyard.dead, theirs}
    assert [d["id"] for d in only_other] == [theirs]
    assert dry["matched"] == len(graveyard.dead) + 1
    assert replayed.json()["matched"] == 1
    run_jobs()
    assert ready_ids(rds) == [theirs]
