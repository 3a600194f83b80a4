"""Console sessions, portal links and tracked replays in a real Redis (api/console/state.py)."""

import asyncio
import hashlib
import time

import pytest
import redis
import redis.asyncio

from api.console.state import (
    SESSION_IDLE_S,
    SESSION_MAX_S,
    ConsoleState,
    Kind,
    LinkState,
    parse_cookie,
)
from tests.support.poll import poll
from webhooks import keys
from webhooks.errors import Invalid
from webhooks.outbound.secretbox import SecretBox
from webhooks.stores.jobqueue import OperationQueue
from webhooks.stores.store import Store

ADMIN = "the-admin-token-0123456789"
Loop = asyncio.AbstractEventLoop


def now() -> int:
    return int(time.time() * 1000)


def sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def tenant_and_key(loop: Loop, ar: "redis.asyncio.Redis") -> tuple[Store, str, str]:
    where = ar.connection_pool.connection_kwargs
    rq = redis.Redis(host=where["host"], port=where["port"])  # where a deletion's job is enqueued
    store = Store(ar, SecretBox(None), operations=OperationQueue(rq))
    created = loop.run_until_complete(store.tenants.create_tenant("acme", now()))
    return store, created.id, created.api_key


def test_a_session_cookie_holds_a_random_id_and_redis_holds_neither_credential(
    loop: Loop, ar: "redis.asyncio.Redis"
) -> None:
    _, tenant_id, api_key = tenant_and_key(loop, ar)
    st = ConsoleState(ar)
    operator = loop.run_until_complete(st.open_session(Kind.OPERATOR, None, now(), credential=ADMIN))
    tenant = loop.run_until_complete(st.open_session(Kind.KEY, tenant_id, now(), credential=api_key))
    assert operator.cookie.startswith("a.") and ADMIN not in operator.cookie
    assert tenant.cookie.startswith(f"t.{tenant_id}.") and api_key not in tenant.cookie
    secret = tenant.cookie.rsplit(".", 1)[1]
    key = keys.console_session(tenant_id, sha(secret))
    assert key.startswith(f"wh:{{t:{tenant_id}}}:"), "a tenant's session carries its hash tag"
    stored = loop.run_until_complete(ar.hgetall(key))
    assert api_key not in str(stored) and secret not in str(stored)
    op_stored = loop.run_until_complete(ar.hgetall(keys.console_session(None, sha(operator.cookie[2:]))))
    assert ADMIN not in str(op_stored) and sha(ADMIN) not in str(op_stored)
    ttl = loop.run_until_complete(ar.ttl(key))
    assert SESSION_IDLE_S - 5 < ttl <= SESSION_IDLE_S
    again = loop.run_until_complete(st.session(tenant.cookie, now(), ADMIN))
    assert again is not None and again.tenant_id == tenant_id and again.csrf == tenant.csrf
    assert loop.run_until_complete(st.session(operator.cookie, now(), ADMIN)) is not None


def test_a_session_ends_when_what_opened_it_no_longer_holds(loop: Loop, ar: "redis.asyncio.Redis") -> None:
    store, tenant_id, api_key = tenant_and_key(loop, ar)
    st = ConsoleState(ar)
    keyed = loop.run_until_complete(st.open_session(Kind.KEY, tenant_id, now(), credential=api_key))
    portal = loop.run_until_complete(st.open_session(Kind.PORTAL, tenant_id, now()))
    operator = loop.run_until_complete(st.open_session(Kind.OPERATOR, None, now(), credential=ADMIN))

    assert loop.run_until_complete(st.session(operator.cookie, now(), "a-new-admin-token-0123456789")) is None
    assert loop.run_until_complete(st.session(operator.cookie, now(), ADMIN)) is None, "and it is gone"

    (key,) = loop.run_until_complete(store.tenants.list_api_keys(tenant_id))
    loop.run_until_complete(store.tenants.revoke_api_key(tenant_id, key.id))
    assert loop.run_until_complete(st.session(keyed.cookie, now(), ADMIN)) is None
    assert loop.run_until_complete(st.session(portal.cookie, now(), ADMIN)) is not None

    loop.run_until_complete(store.start_tenant_deletion(tenant_id, now()))
    assert loop.run_until_complete(st.session(portal.cookie, now(), ADMIN)) is None


def test_a_session_lives_at_most_its_maximum_age(loop: Loop, ar: "redis.asyncio.Redis") -> None:
    _, tenant_id, _ = tenant_and_key(loop, ar)
    st = ConsoleState(ar)
    opened = loop.run_until_complete(st.open_session(Kind.PORTAL, tenant_id, now()))
    later = now() + SESSION_MAX_S * 1000 + 1
    assert loop.run_until_complete(st.session(opened.cookie, later, ADMIN)) is None


@pytest.mark.parametrize(
    "cookie",
    [
        "",
        "a.",
        "a.short",
        "t.ten_x.AAAA",
        "t..a",
        "x" * 300,
        "a." + "A" * 42 + "*",
        "t.ten_" + "0" * 26 + "." + "A" * 44,
    ],
)
def test_junk_cookies_name_no_session(loop: Loop, ar: "redis.asyncio.Redis", cookie: str) -> None:
    assert parse_cookie(cookie) is None
    assert loop.run_until_complete(ConsoleState(ar).session(cookie, now(), ADMIN)) is None


def test_a_portal_link_opens_for_exactly_one_of_many_racing_openers(
    loop: Loop, ar: "redis.asyncio.Redis"
) -> None:
    _, tenant_id, _ = tenant_and_key(loop, ar)
    st = ConsoleState(ar)
    token, expires_ms = loop.run_until_complete(st.create_portal_link(tenant_id, 600, now()))
    assert 599_000 < expires_ms - now() <= 600_000
    stored = loop.run_until_complete(ar.get(keys.portal_link(tenant_id, sha(token))))
    assert stored == tenant_id and token not in str(stored)

    async def race() -> list[LinkState]:
        return list(await asyncio.gather(*(st.use_portal_link(tenant_id, token) for _ in range(20))))

    outcomes = loop.run_until_complete(race())
    assert outcomes.count(LinkState.OPENED) == 1
    assert outcomes.count(LinkState.USED) == 19
    assert loop.run_until_complete(st.use_portal_link("ten_" + "0" * 26, token)) == LinkState.UNKNOWN


def test_an_expired_portal_link_is_unknown(loop: Loop, ar: "redis.asyncio.Redis") -> None:
    _, tenant_id, _ = tenant_and_key(loop, ar)
    st = ConsoleState(ar)
    token, _ = loop.run_until_complete(st.create_portal_link(tenant_id, 1, now()))
    key = keys.portal_link(tenant_id, sha(token))
    poll(lambda: not loop.run_until_complete(ar.exists(key)), 5, what="Redis to expire the link")
    assert loop.run_until_complete(st.use_portal_link(tenant_id, token)) == LinkState.UNKNOWN


def test_a_portal_link_of_a_deleted_tenant_opens_nothing(loop: Loop, ar: "redis.asyncio.Redis") -> None:
    store, tenant_id, _ = tenant_and_key(loop, ar)
    st = ConsoleState(ar)
    token, _ = loop.run_until_complete(st.create_portal_link(tenant_id, 600, now()))
    loop.run_until_complete(store.start_tenant_deletion(tenant_id, now()))
    assert loop.run_until_complete(st.use_portal_link(tenant_id, token)) == LinkState.UNKNOWN


def test_portal_link_lifetimes_are_bounded(loop: Loop, ar: "redis.asyncio.Redis") -> None:
    _, tenant_id, _ = tenant_and_key(loop, ar)
    for bad in (0, -1, 86401):
        with pytest.raises(Invalid, match="expires_in_s"):
            loop.run_until_complete(ConsoleState(ar).create_portal_link(tenant_id, bad, now()))


def test_tracked_replays_are_bounded_and_listed_newest_first(loop: Loop, ar: "redis.asyncio.Redis") -> None:
    st = ConsoleState(ar)
    ids = [f"dlv_{i:026d}" for i in range(1500)]
    for n in range(25):
        loop.run_until_complete(st.remember_replay("ten_" + "1" * 26, f"rpl_{n:026d}", ids, len(ids), now()))
    listed = loop.run_until_complete(st.replays("ten_" + "1" * 26))
    assert [r.id for r in listed] == [f"rpl_{n:026d}" for n in range(24, 4, -1)]
    assert len(listed[0].delivery_ids) == 1000 and listed[0].truncated and listed[0].matched == 1500
    assert loop.run_until_complete(st.replays(None)) == [], "another scope sees none of them"
    assert loop.run_until_complete(st.replay(None, listed[0].id)) is None
