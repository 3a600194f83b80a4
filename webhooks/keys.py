"""Every Redis key the platform uses, in one place.

All keys start with :data:`PREFIX`. A tenant's keys carry the Redis Cluster hash
tag ``{t:<tenant id>}``, so they live in one hash slot and every Lua script
touches the keys of one tenant only (Redis Cluster runs a script within one
slot). Scripts receive a tenant's key base (:func:`tenant_base`) as ``KEYS[1]``
and append the same suffixes as below, so a key's shape is written only here
and in ``webhooks/queueing/lua/``.

A few small global keys live outside any tenant's slot: the tenant list, the
*active* rotation of tenants with work to lease, the *wake* index of tenants the
scheduler must visit, the scheduler lock, API key lookups, replays, when
tenants' operational notifications are due, and the data format (its version,
migration lock and progress, in a slot of their own: ``{format}``). They are kept right by separate
idempotent calls; ``docs/architecture.md`` says how a crash between a tenant's
script and such a call is repaired.
"""

PREFIX = "wh:"

# -- global keys ------------------------------------------------------------------------------
TENANTS = PREFIX + "tenants"  # lex zset of tenant ids
ACTIVE = PREFIX + "active"  # list of tenants with runnable endpoints, rotated by workers (LMOVE)
IDLE = PREFIX + "idle"  # set of tenants a lease found with nothing runnable (the scheduler retires them)
WAKE = PREFIX + "wake"  # zset tenant id -> unix ms at which the scheduler must tick it
SCHEDULER_LOCK = PREFIX + "sched:lock"
MEMORY = PREFIX + "memory"  # hash written by the scheduler: used, max, level (ok|trimming|full), at
RQ_QUEUE = "webhooks"  # RQ queue name (RQ owns its own rq:* keys)
RQ_OPERATIONS_QUEUE = "webhooks-operations"  # RQ queue of the operators' jobs (workers/operations.py)
OPS_SWEEP_LOCK = PREFIX + "ops:sweep"  # one worker at a time hands abandoned operations' jobs to RQ
OPS_DUE = PREFIX + "opsdue"  # zset tenant id -> ms at which its operational notifications are due

# The data format (webhooks/queueing/dataformat.py). Its keys share the hash tag ``{format}``, so on a Redis
# Cluster they live in one slot (any process reads them through the cluster client's routing) and
# its scripts (lua/format_*.lua) touch that slot only. Each script gets DATA_FORMAT_BASE as KEYS[1].
DATA_FORMAT_BASE = PREFIX + "{format}:"
DATA_FORMAT = DATA_FORMAT_BASE + "version"  # string: the format number of the data in this Redis
DATA_FORMAT_LOCK = DATA_FORMAT_BASE + "lock"  # string with a TTL: the owner token of a migration
DATA_FORMAT_PROGRESS = DATA_FORMAT_BASE + "progress"  # hash source format -> a migration's cursor


def api_key(key_hash: str) -> str:
    """API key hash -> ``"<tenant id>:<key id>"`` (found before the tenant is known)."""
    return f"{PREFIX}apikey:{key_hash}"


def replay(replay_id: str) -> str:
    return f"{PREFIX}replay:{replay_id}"


# -- a tenant's keys (one hash slot per tenant) --------------------------------------------------


def tenant_base(tenant_id: str) -> str:
    """The common start of every key of the tenant: ``KEYS[1]`` of every tenant script."""
    return f"{PREFIX}{{t:{tenant_id}}}:"


def tenant(tenant_id: str) -> str:
    """Hash: id, name, created_at; ``act`` = 1 while the tenant should be on :data:`ACTIVE`."""
    return tenant_base(tenant_id) + "info"


def tenant_endpoints(tenant_id: str) -> str:
    return tenant_base(tenant_id) + "eps"


def endpoint_version(tenant_id: str) -> str:
    """A counter bumped by every change to the tenant's endpoints; ingest checks it (lua/ingest.lua)."""
    return tenant_base(tenant_id) + "epver"


def moving(tenant_id: str) -> str:
    """String set while the tenant's hash slot moves between cluster primaries
    (:mod:`webhooks.queueing.reshard`): every tenant script answers PAUSED meanwhile (``lua/_paused.lua``)."""
    return tenant_base(tenant_id) + "moving"


def tenant_api_keys(tenant_id: str) -> str:
    return tenant_base(tenant_id) + "keys"


def rate_bucket(tenant_id: str) -> str:
    """The tenant's API token bucket (hash: tokens, at)."""
    return tenant_base(tenant_id) + "bucket"


def ack_fence(tenant_id: str) -> str:
    """The acknowledgement fence written before a ``WAIT`` on the tenant's primary of a Redis
    Cluster (:mod:`webhooks.runtime.replication`); it expires by itself (a minute)."""
    return tenant_base(tenant_id) + "ack"


def idempotency(tenant_id: str, key: str) -> str:
    return tenant_base(tenant_id) + "idem:" + key


def endpoint(tenant_id: str, endpoint_id: str) -> str:
    """Hash: ``doc`` (JSON), ``disabled``, ``disabled_reason``, and the scheduling state the scripts
    keep (``if`` requests in flight, ``mif`` max in flight, ``cap`` throttled cap, ``fifo``,
    ``q`` on the runnable list, ``pu`` paused until ms, breaker fields ``f``, ``fs``, ``bo``, ``h``;
    ``od`` failing since, from the breaker opening or the engine disabling it to the next success;
    ``rev`` the revision, bumped by every write of ``doc`` or ``disabled``: a worker's copy read at
    another revision is stale, see ``workers/engine.py``)."""
    return tenant_base(tenant_id) + "ep:" + endpoint_id


def ready(tenant_id: str, endpoint_id: str) -> str:
    """List of the endpoint's delivery ids to attempt now, in ingest order."""
    return tenant_base(tenant_id) + "r:" + endpoint_id


def runnable(tenant_id: str) -> str:
    """List of the tenant's endpoints with ready work, free slots and no pause (round robin)."""
    return tenant_base(tenant_id) + "rr"


def due(tenant_id: str, endpoint_id: str) -> str:
    """Zset delivery id -> ms of its next attempt (retries, deferrals, paced replays)."""
    return tenant_base(tenant_id) + "due:" + endpoint_id


def due_endpoints(tenant_id: str) -> str:
    """Zset endpoint id -> earliest ms at which it needs the scheduler (a due delivery or a pause end)."""
    return tenant_base(tenant_id) + "dueq"


def leases(tenant_id: str) -> str:
    """Zset lease id -> expiry ms."""
    return tenant_base(tenant_id) + "leases"


def lease(tenant_id: str, lease_id: str) -> str:
    """List of the delivery ids taken under the lease."""
    return tenant_base(tenant_id) + "lease:" + lease_id


def event(tenant_id: str, event_id: str) -> str:
    """String: a JSON header line ``[type, created ms, delivery id stem, n]`` then the payload JSON."""
    return tenant_base(tenant_id) + "e:" + event_id


def events(tenant_id: str) -> str:
    """Zset event id -> created ms: lists events and deliveries, and orders history for trimming."""
    return tenant_base(tenant_id) + "ev"


def delivery(tenant_id: str, delivery_id: str) -> str:
    """Hash with short fields (see ``webhooks/queueing/history.py``), attempts packed in field ``a``."""
    return tenant_base(tenant_id) + "d:" + delivery_id


def tenant_dead(tenant_id: str) -> str:
    """Zset delivery id -> ms it died."""
    return tenant_base(tenant_id) + "dead"


def stats(tenant_id: str) -> str:
    """Hash of the tenant's counters (events_accepted, attempts_succeeded, ...)."""
    return tenant_base(tenant_id) + "stats"


def rate_window(tenant_id: str, endpoint_id: str, window: int) -> str:
    """Sends to an endpoint in one fixed window (built in ``lua/rate.lua``)."""
    return f"{tenant_base(tenant_id)}rl:{endpoint_id}:{window}"


# -- web console (api/console/state.py): sessions, portal links, replays started there -------------
# A tenant's records carry its hash tag; an operator's (all tenants) carry the tag ``{console}``, so
# that a replay's record and the list of replays, written in one transaction, share a slot.


def _console(tenant_id: str | None) -> str:
    return f"{PREFIX}{{console}}:" if tenant_id is None else f"{PREFIX}{{t:{tenant_id}}}:console:"


def console_session(tenant_id: str | None, session_hash: str) -> str:
    """A console session (hash, with a TTL), named by the SHA-256 of the cookie's secret."""
    return f"{_console(tenant_id)}sess:{session_hash}"


def portal_link(tenant_id: str, token_hash: str) -> str:
    """A one-time portal link (string, with a TTL), named by the SHA-256 of its token."""
    return f"{_console(tenant_id)}portal:{token_hash}"


def console_replay(tenant_id: str | None, replay_id: str) -> str:
    """The deliveries a replay started from the console requeued (JSON, with a TTL)."""
    return f"{_console(tenant_id)}replay:{replay_id}"


def console_replays(tenant_id: str | None) -> str:
    """The newest replays started from the console (list of replay ids, bounded)."""
    return f"{_console(tenant_id)}replays"


# -- event-type catalogue (issue 12: webhooks/intake/event_types.py, webhooks/stores/catalogue.py) ---
# Every change also bumps endpoint_version(tenant_id), the counter ingest checks, so a cached
# catalogue is never used after a change. The tenant's strict mode is the field
# ``strict_event_types`` of its tenant(tenant_id) hash.


def event_types(tenant_id: str) -> str:
    """Hash: event type name -> its JSON document (name, description, schema, archived, times)."""
    return tenant_base(tenant_id) + "evtypes"


def event_type_names(tenant_id: str) -> str:
    """Lex zset of the catalogue's names (all scores 0), for paging."""
    return tenant_base(tenant_id) + "evtypes:names"


# -- replays as a resource (webhooks/stores/replays.py) --------------------------------------------


REPLAYS = PREFIX + "replays"  # zset replay id -> created ms, every replay


def tenant_replays(tenant_id: str) -> str:
    """Zset replay id -> created ms: the replays that requeued this tenant's deliveries."""
    return tenant_base(tenant_id) + "replays"


def replay_members(tenant_id: str, replay_id: str) -> str:
    """List of this tenant's delivery ids a replay requeued (its progress is read from them)."""
    return tenant_base(tenant_id) + "rp:" + replay_id


def replay_progress(tenant_id: str, replay_id: str) -> str:
    """Hash: where a replay's job is in this tenant (``c`` its cursor, ``fin`` 1 when it went through,
    ``due`` the next paced due ms, ``n`` requeued), written with each chunk (``lua/replay_chunk.lua``)."""
    return tenant_base(tenant_id) + "rpp:" + replay_id


def replay_todo(tenant_id: str, replay_id: str) -> str:
    """List of the delivery ids a replay of named ids is to requeue in this tenant."""
    return tenant_base(tenant_id) + "rpq:" + replay_id


def operation_alive(job_id: str) -> str:
    """Set, with a short TTL, by an operation's job while it works (workers/operations.py)."""
    return f"{PREFIX}ops:alive:{job_id}"


def tenant_deletion(tenant_id: str) -> str:
    """Hash: a tenant's deletion as a resource (state, keys deleted, scan cursor); outlives the tenant."""
    return f"{PREFIX}deletion:{tenant_id}"


# -- operational webhooks (webhooks/intake/operational.py, lua/complete.lua, lua/outbox.lua) -------
# Recorded only while WEBHOOKS_OPERATIONAL_WEBHOOK_URL is set, never for the operator tenant itself.


def ops_outbox(tenant_id: str) -> str:
    """List of notifications (JSON) waiting to become events of the operator tenant, oldest first;
    bounded (lua/complete.lua keeps the newest ``OPS_OUTBOX_MAX``)."""
    return tenant_base(tenant_id) + "ops"


def ops_dead(tenant_id: str) -> str:
    """Hash endpoint id -> JSON summary of the deliveries that died there in the open window
    (``n``, ``first``, ``last`` ms, ``ids`` samples, last ``code`` and ``err``): one field per endpoint."""
    return tenant_base(tenant_id) + "opsdead"


def ops_sequence(tenant_id: str) -> str:
    """Counter numbering the tenant's notifications (their event ids derive from it)."""
    return tenant_base(tenant_id) + "opsn"
