"""The format of the platform's data in Redis: recorded, checked by every process at start, migrated.

The key :data:`webhooks.keys.DATA_FORMAT` holds the format number of the data in a Redis. Every
process (``webhooks api``, ``worker``, ``scheduler``, and ``webhooks up`` before its children)
calls :func:`ensure` once Redis answers, before it reads or writes anything else:

- key absent, Redis empty of platform data: the key is written (``SET NX``) as :data:`CURRENT`;
- key absent, platform data present: it was written by a release before the key existed, whose
  format is :data:`UNVERSIONED` (1); that is recorded (``SET NX``), then treated as below;
- the format is newer than :data:`CURRENT`: :class:`~webhooks.errors.DataFormatError`, one line
  naming both formats (the process exits non-zero; an older release must not run on newer data);
- the format is older: the registered migrations (:data:`MIGRATIONS`, one from each format N to
  N + 1) run in turn, each once, under a lock, then the process starts.

A migration runs in chunks: ``step(r, cursor)`` migrates one chunk from ``cursor`` (``""`` at first)
and returns the next cursor, or ``None`` when done. After each chunk the cursor is recorded
(``lua/format_advance.lua``), only while the lock is still the caller's, so a migration killed half
way continues from the last recorded chunk in whichever process takes the lock next; that chunk is
run again, so a step must be idempotent (skip what is already migrated). The lock is a key with a
TTL and an owner token (``lua/format_lock.lua``), renewed by a thread while the migration runs and by
every recorded chunk; a process that dies lets it expire after :data:`LOCK_TTL_MS`. Other processes
starting meanwhile wait, and take over the lock if it expires. ``docs/upgrading.md`` is the
operator's side of this.

A process already running checks the format again now and then (:func:`newer_than_code`: workers at
each drain job, schedulers at each sweep, the API every 5 s: api/format_watch.py) and stops, as on
SIGTERM, when a newer release has converted the data under it.

Format 1 is the data of every release up to now (the keys of :mod:`webhooks.keys`); no migration
exists yet, so :data:`MIGRATIONS` is empty (tests register their own).
"""

import importlib.resources
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import redis

from webhooks import keys
from webhooks.errors import DataFormatError

log = logging.getLogger("webhooks.dataformat")

CURRENT = 1  # the format this code reads and writes
UNVERSIONED = 1  # the format of data written before the format key existed (up to release 900e4e7)
LOCK_TTL_MS = 30_000
WAIT_LOG_EVERY_S = 10.0
# Global keys any release writes as soon as it holds data: one of them present means "not empty".
DATA_MARKERS = (keys.TENANTS, keys.ACTIVE, keys.WAKE, keys.REPLAYS, keys.OPS_DUE)

Step = Callable[["redis.Redis", str], str | None]


@dataclass(frozen=True, slots=True)
class Migration:
    """Migrates format ``source`` to ``source + 1``: ``step(r, cursor)`` does one chunk from
    ``cursor`` (``""`` first) and returns the next one, or ``None`` when nothing is left. A chunk may
    be run again after a crash: it must leave migrated data as it is."""

    source: int
    description: str
    step: Step


MIGRATIONS: dict[int, Migration] = {}  # source format -> its migration


def register(migration: Migration, registry: dict[int, Migration] = MIGRATIONS) -> None:
    if migration.source in registry:
        raise ValueError(f"a migration from format {migration.source} is registered already")
    registry[migration.source] = migration


def _script(r: "redis.Redis", name: str) -> Any:
    source = importlib.resources.files("webhooks.queueing").joinpath(f"lua/{name}.lua").read_text()
    return r.register_script(source)


def _text(value: object) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


def holds_data(r: "redis.Redis") -> bool:
    """Whether Redis holds platform data (one key at a time: on a cluster they are in different slots)."""
    return any(r.exists(key) for key in DATA_MARKERS)


def stored(r: "redis.Redis") -> int | None:
    """The format recorded in Redis (``None``: none recorded)."""
    value = _text(r.get(keys.DATA_FORMAT))
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise DataFormatError(f"the data format key {keys.DATA_FORMAT} holds {value!r}, no number") from None


def record_initial(r: "redis.Redis", current: int = CURRENT) -> int:
    """The stored format, writing it first when absent: :data:`UNVERSIONED` over existing data,
    else ``current``. Written only if still absent (``lua/format_record.lua``, allowed on a full
    Redis), so processes starting together agree on one value."""
    found = stored(r)
    if found is not None:
        return found
    existing = holds_data(r)
    initial = UNVERSIONED if existing else current
    recorded = _text(_script(r, "format_record")(keys=[keys.DATA_FORMAT_BASE], args=[initial]))
    if recorded == str(initial):
        what = "data written before formats were recorded" if existing else "an empty Redis"
        log.info("data format: recorded format %d (%s)", initial, what)
    found = stored(r)
    assert found is not None
    return found


def newer_than_code(value: object, current: int = CURRENT) -> DataFormatError | None:
    """For a process already running: the error to stop on when ``value`` (the answer of a GET of
    :data:`~webhooks.keys.DATA_FORMAT`) names a format newer than the code, else ``None`` (a newer
    release migrated the data while the process ran: docs/upgrading.md says to stop old processes
    first; this stops those left running)."""
    text = _text(value)
    if text is None or not text.isdigit() or int(text) <= current:
        return None
    return too_new(int(text), current)


def too_new(found: int, current: int) -> DataFormatError:
    return DataFormatError(
        f"the data in Redis is format {found}, newer than this version knows (it reads format {current} "
        f"at most): run the release that wrote it or a newer one (docs/upgrading.md)"
    )


class Lock:
    """The migration lock: a key with a TTL holding an owner token; :meth:`keep` renews it from a
    thread until :meth:`release`, and sets :attr:`lost` if another process has it by then."""

    def __init__(self, r: "redis.Redis", ttl_ms: int = LOCK_TTL_MS) -> None:
        self.r = r
        self.ttl_ms = ttl_ms
        self.owner = f"{os.getpid()}:{secrets.token_hex(8)}"
        self._take = _script(r, "format_lock")
        self._free = _script(r, "format_unlock")
        self._done = threading.Event()
        self.lost = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self) -> bool:
        return bool(self._take(keys=[keys.DATA_FORMAT_BASE], args=[self.owner, self.ttl_ms]))

    def keep(self) -> None:
        def renew() -> None:
            while not self._done.wait(self.ttl_ms / 3000):
                try:
                    if not self.acquire():
                        self.lost.set()
                        return
                except redis.RedisError as exc:  # the next renewal or the recorded chunk tells
                    log.warning("data format: cannot renew the migration lock now (%s)", type(exc).__name__)

        self._thread = threading.Thread(target=renew, name="format-lock", daemon=True)
        self._thread.start()

    def release(self) -> None:
        self._done.set()
        if self._thread:
            self._thread.join()
        try:
            self._free(keys=[keys.DATA_FORMAT_BASE], args=[self.owner])
        except redis.RedisError:
            pass  # it expires


def migrate_once(r: "redis.Redis", migration: Migration, lock: Lock) -> bool:
    """Run ``migration`` to its end from its recorded cursor, holding ``lock`` (taken). Returns
    False when the lock was lost on the way (another process goes on from the recorded cursor)."""
    advance = _script(r, "format_advance")
    cursor = _text(r.hget(keys.DATA_FORMAT_PROGRESS, str(migration.source))) or ""
    log.warning(
        "data format: migrating format %d to %d (%s)%s",
        migration.source,
        migration.source + 1,
        migration.description,
        f", resuming at {cursor!r}" if cursor else "",
    )
    chunks = 0
    while True:
        if lock.lost.is_set():
            return False
        following = migration.step(r, cursor)
        done = following is None
        args = [lock.owner, lock.ttl_ms, migration.source, following or "", int(done)]
        answer = int(advance(keys=[keys.DATA_FORMAT_BASE], args=args))
        if answer == 0:
            log.warning("data format: the migration lock passed to another process; it goes on from here")
            return False
        if answer == -1:
            return True  # another process finished it (after this one's lock had expired)
        chunks += 1
        if done:
            log.warning("data format: now format %d (%d chunks)", migration.source + 1, chunks)
            return True
        cursor = following or ""


def ensure(
    r: "redis.Redis",
    *,
    current: int = CURRENT,
    migrations: Mapping[int, Migration] = MIGRATIONS,
    lock_ttl_ms: int = LOCK_TTL_MS,
    poll_s: float = 0.2,
) -> int:
    """Check (and record, and migrate) the data format before a process starts; returns it
    (``current``). Raises :class:`DataFormatError` for data newer than ``current`` or a format with
    no migration to the next."""
    found = record_initial(r, current)
    waited_s, logged_at = 0.0, -WAIT_LOG_EVERY_S
    while True:
        if found == current:
            return found
        if found > current:
            raise too_new(found, current)
        missing = [n for n in range(found, current) if n not in migrations]
        if missing:  # checked for the whole way before any step of it runs
            raise DataFormatError(
                f"the data in Redis is format {found}, and this version (format {current}) has no "
                f"migration from format {missing[0]}: upgrade through the releases in between "
                f"(docs/upgrading.md)"
            )
        migration = migrations[found]
        lock = Lock(r, lock_ttl_ms)
        if lock.acquire():
            lock.keep()
            try:
                migrate_once(r, migration, lock)
            finally:
                lock.release()
        else:
            if waited_s - logged_at >= WAIT_LOG_EVERY_S:
                holder = _text(r.get(keys.DATA_FORMAT_LOCK))
                log.warning("data format: waiting for the migration from format %d, run by %s", found, holder)
                logged_at = waited_s
            time.sleep(poll_s)
            waited_s += poll_s
        found = stored(r) or found
