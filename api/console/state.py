"""What the web console keeps in Redis: sessions, one-time portal links, replays started there.

**Sessions.** The browser holds a cookie ``a.<secret>`` (an operator) or
``t.<tenant id>.<secret>`` (a tenant); Redis holds the record under the SHA-256
of the secret, so neither the cookie nor Redis carries the admin token or an
API key, and a copy of Redis holds no usable session. A record lives
:data:`SESSION_IDLE_S` after its last use and never longer than
:data:`SESSION_MAX_S`. Every use checks that what opened it still holds: an
operator's session ends when the admin token changes (the record keeps an HMAC
of the token keyed by the cookie's secret, useless without the cookie), a key's
session when the key is revoked or its tenant deleted, a portal session when
its tenant is deleted.

**Portal links.** A random token, stored hashed with a TTL; opening it swaps
the record for a ``used`` marker in one command (``SET ... XX GET KEEPTTL``),
so exactly one opener gets a session however many race, and a second opening
can say the link was used rather than merely unknown.

**Replays.** The JSON API's replay answers ``{replay_id, matched}``; to show a
replay's progress the console remembers which deliveries it requeued (bounded,
:data:`MAX_TRACKED` ids) and reads their statuses through the store.

Key names come from :mod:`webhooks.keys`; the caller passes the clock.
"""

import enum
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import cast

import orjson
from redis.asyncio import Redis

from webhooks import keys
from webhooks.errors import Invalid

SESSION_IDLE_S = 8 * 3600
SESSION_MAX_S = 24 * 3600
PORTAL_LINK_DEFAULT_S = 600
PORTAL_LINK_MAX_S = 86400
MAX_TRACKED = 1000  # delivery ids remembered per replay
REPLAYS_KEPT = 20  # replays listed per scope
REPLAY_KEPT_S = 7 * 86400
_SECRET = re.compile(r"[A-Za-z0-9_-]{43}")  # secrets.token_urlsafe(32)
_TENANT_ID = re.compile(r"ten_[0-9a-z]{26}")  # webhooks.ids
_USED = "used"


class Kind(enum.StrEnum):
    OPERATOR = "operator"  # signed in with the admin token: every tenant
    KEY = "key"  # signed in with a tenant's API key
    PORTAL = "portal"  # opened a portal link: that tenant only


@dataclass(frozen=True, slots=True)
class Session:
    cookie: str  # the cookie's value: a credential, never logged
    kind: Kind
    tenant_id: str | None  # the tenant a tenant session is bound to, or the operator's pick
    csrf: str  # the token every form of this session carries
    created_ms: int


class LinkState(enum.StrEnum):
    OPENED = "opened"  # this call consumed it
    USED = "used"  # someone opened it before
    UNKNOWN = "unknown"  # expired, never issued, or its tenant is gone


@dataclass(frozen=True, slots=True)
class TrackedReplay:
    id: str
    created_ms: int
    matched: int
    delivery_ids: list[str]
    truncated: bool  # more deliveries were requeued than are tracked


def _sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _seal(secret: str, credential: str) -> str:
    return hmac.new(secret.encode(), credential.encode(), hashlib.sha256).hexdigest()


def parse_cookie(cookie: str) -> tuple[str | None, str] | None:
    """``(tenant id or None, secret)`` of a well-formed cookie value; None for anything else."""
    if cookie.startswith("a.") and _SECRET.fullmatch(cookie[2:]):
        return None, cookie[2:]
    kind, _, rest = cookie.partition(".")
    tenant_id, _, secret = rest.partition(".")
    if kind == "t" and _TENANT_ID.fullmatch(tenant_id) and _SECRET.fullmatch(secret):
        return tenant_id, secret
    return None


def check_tenant_id(tenant_id: str) -> str:
    if not _TENANT_ID.fullmatch(tenant_id):
        raise Invalid("tenant_id: not a tenant id")
    return tenant_id


class ConsoleState:
    def __init__(self, r: "Redis") -> None:
        self.r = r

    # -- sessions -------------------------------------------------------------------------------

    async def open_session(
        self, kind: Kind, tenant_id: str | None, now_ms: int, *, credential: str = ""
    ) -> Session:
        """A new session. ``credential`` is the admin token (operator) or the API key (key session);
        neither is stored: an operator's is kept as an HMAC keyed by the cookie's secret, a key's as
        the hash the key is already stored under."""
        if kind != Kind.OPERATOR and tenant_id is None:
            raise ValueError("a tenant session needs its tenant")
        secret = secrets.token_urlsafe(32)
        bound = None if kind == Kind.OPERATOR else tenant_id
        cookie = f"a.{secret}" if bound is None else f"t.{bound}.{secret}"
        check = {Kind.OPERATOR: _seal(secret, credential), Kind.KEY: _sha(credential), Kind.PORTAL: ""}[kind]
        session = Session(cookie, kind, tenant_id, secrets.token_urlsafe(32), now_ms)
        key = keys.console_session(bound, _sha(secret))
        async with self.r.pipeline(transaction=True) as pipe:
            pipe.hset(
                key,
                mapping={
                    "kind": kind.value,
                    "tenant_id": tenant_id or "",
                    "csrf": session.csrf,
                    "created_ms": now_ms,
                    "check": check,
                },
            )
            pipe.expire(key, SESSION_IDLE_S)
            await pipe.execute()
        return session

    async def session(self, cookie: str, now_ms: int, admin_token: str | None) -> Session | None:
        """The live session a cookie names (its idle time restarts), or None; never raises for junk."""
        parsed = parse_cookie(cookie)
        if parsed is None:
            return None
        bound, secret = parsed
        key = keys.console_session(bound, _sha(secret))
        h = cast(dict[str, str], await self.r.hgetall(key))
        if not h:
            return None
        kind = Kind(h["kind"])
        tenant_id = h["tenant_id"] or None
        if now_ms - int(h["created_ms"]) > SESSION_MAX_S * 1000 or not await self._still_valid(
            kind, tenant_id, secret, h["check"], admin_token
        ):
            await self.r.delete(key)
            return None
        await self.r.expire(key, SESSION_IDLE_S)
        return Session(cookie, kind, tenant_id, h["csrf"], int(h["created_ms"]))

    async def _still_valid(
        self, kind: Kind, tenant_id: str | None, secret: str, check: str, admin_token: str | None
    ) -> bool:
        if kind == Kind.OPERATOR:
            return admin_token is not None and hmac.compare_digest(check, _seal(secret, admin_token))
        assert tenant_id is not None
        if kind == Kind.KEY:  # the key's record is "<tenant id>:<key id>" (webhooks.stores.store)
            owner = await self.r.get(keys.api_key(check))
            return owner is not None and str(owner).partition(":")[0] == tenant_id
        return bool(await self.r.exists(keys.tenant(tenant_id)))

    async def pick_tenant(self, session: Session, tenant_id: str | None) -> Session:
        """An operator's session now acts for ``tenant_id`` (None: every tenant)."""
        if session.kind != Kind.OPERATOR:
            raise ValueError("only an operator picks a tenant")
        parsed = parse_cookie(session.cookie)
        assert parsed is not None
        await self.r.hset(keys.console_session(None, _sha(parsed[1])), "tenant_id", tenant_id or "")
        return Session(session.cookie, session.kind, tenant_id, session.csrf, session.created_ms)

    async def close_session(self, cookie: str) -> None:
        parsed = parse_cookie(cookie)
        if parsed is not None:
            await self.r.delete(keys.console_session(parsed[0], _sha(parsed[1])))

    # -- portal links ---------------------------------------------------------------------------

    async def create_portal_link(self, tenant_id: str, expires_in_s: int, now_ms: int) -> tuple[str, int]:
        """``(token, expires at ms)`` of a new one-time link into ``tenant_id``'s portal."""
        if not 1 <= expires_in_s <= PORTAL_LINK_MAX_S:
            raise Invalid(f"expires_in_s: from 1 to {PORTAL_LINK_MAX_S} seconds")
        token = secrets.token_urlsafe(32)
        await self.r.set(
            keys.portal_link(check_tenant_id(tenant_id), _sha(token)), tenant_id, ex=expires_in_s
        )
        return token, now_ms + expires_in_s * 1000

    async def use_portal_link(self, tenant_id: str, token: str) -> LinkState:
        """Consume a link atomically: :attr:`LinkState.OPENED` for exactly one caller."""
        if not _TENANT_ID.fullmatch(tenant_id) or not _SECRET.fullmatch(token):
            return LinkState.UNKNOWN
        before = await self.r.set(
            keys.portal_link(tenant_id, _sha(token)), _USED, xx=True, get=True, keepttl=True
        )
        if before is None:
            return LinkState.UNKNOWN
        if before == _USED:
            return LinkState.USED
        if before != tenant_id or not await self.r.exists(keys.tenant(tenant_id)):
            return LinkState.UNKNOWN
        return LinkState.OPENED

    # -- replays started from the console ---------------------------------------------------------

    async def remember_replay(
        self, scope: str | None, replay_id: str, delivery_ids: list[str], matched: int, now_ms: int
    ) -> None:
        """Keep which deliveries a replay requeued (``scope``: its tenant, None for all tenants)."""
        doc = {"id": replay_id, "created_ms": now_ms, "matched": matched, "ids": delivery_ids[:MAX_TRACKED]}
        listed = keys.console_replays(scope)
        async with self.r.pipeline(transaction=True) as pipe:
            pipe.set(keys.console_replay(scope, replay_id), orjson.dumps(doc), ex=REPLAY_KEPT_S)
            pipe.lpush(listed, replay_id)
            pipe.ltrim(listed, 0, REPLAYS_KEPT - 1)
            pipe.expire(listed, REPLAY_KEPT_S)
            await pipe.execute()

    async def replay(self, scope: str | None, replay_id: str) -> TrackedReplay | None:
        if len(replay_id) > 64:
            return None
        raw = await self.r.get(keys.console_replay(scope, replay_id))
        if raw is None:
            return None
        doc = orjson.loads(raw)
        ids = list(doc["ids"])
        return TrackedReplay(doc["id"], doc["created_ms"], doc["matched"], ids, doc["matched"] > len(ids))

    async def replays(self, scope: str | None) -> list[TrackedReplay]:
        """The newest replays of this scope started from the console, newest first."""
        found = []
        for replay_id in cast(list[str], await self.r.lrange(keys.console_replays(scope), 0, -1)):
            tracked = await self.replay(scope, replay_id)
            if tracked is not None:
                found.append(tracked)
        return found
