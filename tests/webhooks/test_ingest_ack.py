"""Group commits and their acknowledgement (``WEBHOOKS_ACK_REPLICAS``; webhooks/intake/ingest.py).

The writers do not wait for a group's ``WAIT``: they go on writing the next groups while earlier
ones wait for the replica. A real primary with one real replica, frozen with SIGSTOP (still
connected, acknowledging nothing): requests keep being written to the primary, none is answered;
each is answered once the replica runs again, and then holds its event. And each is answered by
a ``WAIT`` sent after its own write: one written while an earlier group's ``WAIT`` runs towards
its timeout is refused only a full timeout after its own write, not with the earlier group.
"""

import asyncio
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import redis.asyncio

from tests.support.poll import poll
from tests.support.redis_proc import RedisProc
from tests.webhooks.test_ingest import NOW, add_endpoint
from webhooks import keys
from webhooks.errors import ReplicationTimeout
from webhooks.intake.ingest import MAX_ACKS, MAX_WRITERS, EventIn, Ingestor
from webhooks.runtime.replication import AckPolicy

TENANT = "t-ack"


class Pair:
    def __init__(self, base: Path) -> None:
        self.primary = RedisProc(base / "primary").start()
        self.replica = RedisProc(
            base / "replica", extra=["--replicaof", "127.0.0.1", str(self.primary.port)]
        ).start()
        self.p = redis.Redis(port=self.primary.port, decode_responses=True)
        self.r = redis.Redis(port=self.replica.port, decode_responses=True)
        poll(lambda: int(self.p.info("replication")["connected_slaves"]) == 1, what="the replica")
        poll(lambda: self.r.info("replication").get("master_link_status") == "up", what="the link up")
        add_endpoint(self.p, TENANT, "ep_a")

    def freeze(self) -> None:
        assert self.replica.proc is not None
        self.replica.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.replica.proc is not None
        self.replica.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        self.thaw()
        self.p.close()
        self.r.close()
        self.replica.stop()
        self.primary.stop()


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Pair]:
    both = Pair(tmp_path)
    yield both
    both.stop()


async def _written(pair: Pair, event_id: str) -> None:
    """Until the event is on the primary (its group's script returned, or is about to)."""
    key = keys.event(TENANT, event_id)
    deadline = time.monotonic() + 10
    while not await asyncio.to_thread(pair.p.exists, key):
        assert time.monotonic() < deadline, f"{event_id} was not written: a WAIT holds the writers"
        await asyncio.sleep(0.01)


def test_groups_written_while_a_wait_is_pending_are_each_answered_after_their_acknowledgement(
    pair: Pair,
) -> None:
    n = MAX_WRITERS + MAX_ACKS + 2  # more groups than writers and acknowledgements in flight

    async def run() -> None:
        ar = redis.asyncio.Redis(port=pair.primary.port, decode_responses=True)
        ing = Ingestor(ar, max_payload_bytes=10_000, ack=AckPolicy(replicas=1, timeout_ms=30_000))
        on_replica_when_answered: dict[str, bool] = {}

        def answered(event_id: str) -> None:
            key = keys.event(TENANT, event_id)
            on_replica_when_answered[event_id] = bool(pair.r.exists(key))

        try:
            await ing.ingest(TENANT, [EventIn("t.x", {}, "warm")], NOW)  # routes cached
            pair.freeze()
            requests = []
            for i in range(n):
                event_id = f"e{i}"
                task = asyncio.ensure_future(ing.ingest(TENANT, [EventIn("t.x", {"i": i}, event_id)], NOW))
                task.add_done_callback(lambda _, e=event_id: answered(e))  # type: ignore[misc]
                requests.append(task)
                await _written(pair, event_id)  # written while the earlier groups' WAITs wait
            await asyncio.sleep(0.3)
            assert not any(t.done() for t in requests), "answered before the replica had it"
            assert on_replica_when_answered == {}
            pair.thaw()
            await asyncio.wait_for(asyncio.gather(*requests), 20)
            assert on_replica_when_answered == {f"e{i}": True for i in range(n)}
        finally:
            await ar.aclose()

    asyncio.run(run())


def test_a_group_written_during_an_earlier_wait_is_refused_a_full_timeout_after_its_own_write(
    pair: Pair,
) -> None:
    timeout_s = 1.5

    async def run() -> None:
        ar = redis.asyncio.Redis(port=pair.primary.port, decode_responses=True)
        ing = Ingestor(ar, max_payload_bytes=10_000, ack=AckPolicy(replicas=1, timeout_ms=1500))
        try:
            await ing.ingest(TENANT, [EventIn("t.x", {}, "warm")], NOW)
            pair.freeze()
            first = asyncio.ensure_future(ing.ingest(TENANT, [EventIn("t.x", {}, "first")], NOW))
            await _written(pair, "first")
            await asyncio.sleep(timeout_s / 2)  # the first group's WAIT is half way to its timeout
            second = asyncio.ensure_future(ing.ingest(TENANT, [EventIn("t.x", {}, "second")], NOW))
            await _written(pair, "second")
            second_written = time.monotonic()
            with pytest.raises(ReplicationTimeout):
                await first
            assert not second.done(), "the second group was answered by a WAIT sent before its write"
            with pytest.raises(ReplicationTimeout):
                await second
            assert time.monotonic() - second_written >= timeout_s * 0.9
        finally:
            await ar.aclose()

    asyncio.run(run())
