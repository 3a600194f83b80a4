"""Every Redis key the platform uses, in one place.

All keys start with :data:`PREFIX`. Lua scripts receive the prefix as an
argument and build the same names with the same suffixes as below, so a key's
shape is only ever written twice: here and in ``webhooks/lua/``.
"""

PREFIX = "wh:"

# Queue state (see webhooks/queue.py)
READY = PREFIX + "q:ready"  # list of delivery ids to attempt now
DUE = PREFIX + "q:due"  # zset delivery id -> due unix ms
LEASES = PREFIX + "q:leases"  # zset lease id -> expiry unix ms
SCHEDULER_LOCK = PREFIX + "sched:lock"
STATS = PREFIX + "stats"  # hash of counters for /metrics
TENANTS = PREFIX + "tenants"  # lex zset of tenant ids
DEAD_ALL = PREFIX + "dead"  # zset delivery id -> dead unix ms, every tenant
RQ_QUEUE = "webhooks"  # RQ queue name (RQ owns its own rq:* keys)


def lease(lease_id: str) -> str:
    return f"{PREFIX}q:lease:{lease_id}"


def tenant(tenant_id: str) -> str:
    return f"{PREFIX}t:{tenant_id}"


def tenant_endpoints(tenant_id: str) -> str:
    return f"{PREFIX}t:{tenant_id}:eps"


def endpoint_version(tenant_id: str) -> str:
    """A counter bumped by every change to the tenant's endpoints; ingest checks it (lua/ingest.lua)."""
    return f"{PREFIX}t:{tenant_id}:epver"


def tenant_deliveries(tenant_id: str) -> str:
    return f"{PREFIX}t:{tenant_id}:dlvs"


def tenant_dead(tenant_id: str) -> str:
    return f"{PREFIX}t:{tenant_id}:dead"


def tenant_api_keys(tenant_id: str) -> str:
    return f"{PREFIX}t:{tenant_id}:keys"


def api_key(key_hash: str) -> str:
    return f"{PREFIX}apikey:{key_hash}"


def idempotency(tenant_id: str, key: str) -> str:
    return f"{PREFIX}t:{tenant_id}:idem:{key}"


def endpoint(endpoint_id: str) -> str:
    return f"{PREFIX}ep:{endpoint_id}"


def endpoint_deliveries(endpoint_id: str) -> str:
    return f"{PREFIX}ep:{endpoint_id}:dlvs"


def event(tenant_id: str, event_id: str) -> str:
    return f"{PREFIX}evt:{tenant_id}:{event_id}"


def delivery(delivery_id: str) -> str:
    return f"{PREFIX}dlv:{delivery_id}"


def attempts(delivery_id: str) -> str:
    return f"{PREFIX}dlv:{delivery_id}:att"


def replay(replay_id: str) -> str:
    return f"{PREFIX}replay:{replay_id}"


def rate_bucket(tenant_id: str) -> str:
    """The tenant's API token bucket (hash: tokens, at)."""
    return f"{PREFIX}t:{tenant_id}:bucket"


def rate_window(endpoint_id: str, window: int) -> str:
    """Sends to an endpoint in one fixed window (built in ``lua/rate.lua``)."""
    return f"{PREFIX}rl:{endpoint_id}:{window}"


# -- event-type catalogue (issue 12: webhooks/event_types.py, webhooks/event_type_store.py) -------
# Every change also bumps endpoint_version(tenant_id), the counter ingest checks, so a cached
# catalogue is never used after a change. The tenant's strict mode is the field
# ``strict_event_types`` of its tenant(tenant_id) hash.


def event_types(tenant_id: str) -> str:
    """Hash: event type name -> its JSON document (name, description, schema, archived, times)."""
    return f"{PREFIX}{{t:{tenant_id}}}:evtypes"


def event_type_names(tenant_id: str) -> str:
    """Lex zset of the catalogue's names (all scores 0), for paging."""
    return f"{PREFIX}{{t:{tenant_id}}}:evtypes:names"
