"""A producer that posts events over HTTP at a steady rate and records exactly what was acknowledged.

Events carry ids chosen here (``<run>-<seq>``), so a request that failed (the API
killed mid-request, a 503 while Redis restarts) is simply sent again with the same
ids: the API answers the stored events instead of storing them twice. An event
is *accepted* only once a 202 naming it came back. Batches (``/v1/events/batch``)
and single events (``/v1/events``) are mixed.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx

EVENT_TYPES = ("order.created", "order.paid", "invoice.sent")


@dataclass
class EventRecord:
    seq: int
    id: str
    event_type: str
    first_sent: float = 0.0
    last_sent: float = 0.0  # when the request that was (or will be) acknowledged went out
    accepted_at: float | None = None
    created_at: float | None = None  # the stored event's created_at, from the 202
    deliveries: dict[str, str] = field(default_factory=dict)  # endpoint id -> delivery id
    tries: int = 0


@dataclass
class InFlight:
    sent_at: float
    ids: list[str]


@dataclass
class ProducerStats:
    requests: int = 0
    failures: int = 0  # connection errors and 5xx, all retried
    status_counts: dict[int, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    rejected: list[str] = field(default_factory=list)  # unexpected 4xx: a bug, never retried
    given_up: int = 0
    latencies: list[float] = field(default_factory=list)  # seconds, requests answered 202


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


class Producer:
    def __init__(
        self,
        api_url: str,
        api_key: str,
        *,
        events: int,
        rate: float,
        run_id: str,
        concurrency: int = 4,
        max_batch: int = 20,
        single_ratio: float = 0.3,
        give_up_s: float = 90.0,
        seed: int = 0,
    ) -> None:
        self.api_url = api_url
        self.headers = {"Authorization": f"Bearer {api_key}"}
        self.rate = rate
        self.concurrency = concurrency
        self.give_up_s = give_up_s
        rng = random.Random(seed)
        self.records: dict[str, EventRecord] = {}
        self.batches: list[list[str]] = []
        seq = 0
        while seq < events:
            size = 1 if rng.random() < single_ratio else rng.randint(2, max_batch)
            size = min(size, events - seq)
            ids = []
            for _ in range(size):
                eid = f"{run_id}-{seq:06d}"
                self.records[eid] = EventRecord(seq, eid, EVENT_TYPES[seq % len(EVENT_TYPES)])
                ids.append(eid)
                seq += 1
            self.batches.append(ids)
        self.stats = ProducerStats()
        self.acked = 0  # events acknowledged so far
        self.lock = threading.Lock()
        self.inflight: dict[int, InFlight] = {}
        self.started_at = 0.0
        self.finished_at = 0.0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._thread, name="producer", daemon=True)

    # -- control -----------------------------------------------------------------------------------

    def start(self) -> Producer:
        self.started_at = time.time()
        self.thread.start()
        return self

    def join(self, timeout_s: float | None = None) -> bool:
        self.thread.join(timeout_s)
        return not self.thread.is_alive()

    @property
    def duration_s(self) -> float:
        return len(self.records) / self.rate

    def inflight_snapshot(self) -> list[InFlight]:
        with self.lock:
            return list(self.inflight.values())

    def accepted(self) -> dict[str, EventRecord]:
        return {k: r for k, r in self.records.items() if r.accepted_at is not None}

    # -- the loop ----------------------------------------------------------------------------------

    def _thread(self) -> None:
        asyncio.run(self._main())
        self.finished_at = time.time()
        self.done.set()

    async def _main(self) -> None:
        queue: asyncio.Queue[tuple[float, list[str]]] = asyncio.Queue()
        offset = 0
        for ids in self.batches:
            queue.put_nowait((self.started_at + offset / self.rate, ids))
            offset += len(ids)
        limits = httpx.Limits(
            max_connections=self.concurrency * 2, max_keepalive_connections=self.concurrency
        )
        async with httpx.AsyncClient(
            base_url=self.api_url, headers=self.headers, timeout=10.0, limits=limits
        ) as client:
            await asyncio.gather(*(self._sender(client, queue, i) for i in range(self.concurrency)))

    async def _sender(
        self, client: httpx.AsyncClient, queue: asyncio.Queue[tuple[float, list[str]]], n: int
    ) -> None:
        token = n * 1_000_000_000
        while not queue.empty():
            at, ids = queue.get_nowait()
            wait = at - time.time()
            if wait > 0:
                await asyncio.sleep(wait)
            first = time.time()
            delay = 0.05
            while True:
                token += 1
                ok = await self._post(client, ids, token)
                if ok is not None:
                    break
                if time.time() - first > self.give_up_s:
                    with self.lock:
                        self.stats.given_up += len(ids)
                    break
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)

    async def _post(self, client: httpx.AsyncClient, ids: list[str], token: int) -> bool | None:
        """True when acknowledged, False when refused for good, None to try again."""
        recs = [self.records[i] for i in ids]
        now = time.time()
        for r in recs:
            r.tries += 1
            r.first_sent = r.first_sent or now
            r.last_sent = now
        docs = [{"id": r.id, "event_type": r.event_type, "payload": {"id": r.id, "seq": r.seq}} for r in recs]
        with self.lock:
            self.inflight[token] = InFlight(now, ids)
            self.stats.requests += 1
        try:
            if len(docs) == 1:
                resp = await client.post("/v1/events", json=docs[0])
            else:
                resp = await client.post("/v1/events/batch", json={"events": docs})
        except httpx.HTTPError as exc:
            with self.lock:
                self.stats.failures += 1
                name = type(exc).__name__
                self.stats.errors[name] = self.stats.errors.get(name, 0) + 1
            return None
        finally:
            with self.lock:
                self.inflight.pop(token, None)
        answered = time.time()
        with self.lock:
            self.stats.status_counts[resp.status_code] = self.stats.status_counts.get(resp.status_code, 0) + 1
        if resp.status_code == 202:
            with self.lock:
                self.stats.latencies.append(answered - now)
            body: Any = resp.json()
            items = body if isinstance(body, list) else [body]
            got = {item["id"]: item for item in items}
            for r in recs:
                item = got[r.id]
                r.accepted_at = answered
                r.created_at = _epoch(item["created_at"])
                r.deliveries = {d["endpoint_id"]: d["id"] for d in item["deliveries"]}
            with self.lock:
                self.acked += len(recs)
            return True
        if resp.status_code >= 500 or resp.status_code == 429:
            with self.lock:
                self.stats.failures += 1
            return None
        with self.lock:
            self.stats.rejected.append(f"{resp.status_code}: {resp.text[:200]}")
        return False
