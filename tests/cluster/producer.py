"""A producer for the cluster tests: posts events round robin over tenants, each retried (same id,
so the retry is idempotent) until the API answers 202."""

import threading
import time
from collections import Counter

import httpx

from tests.conftest import Tenant

RATE_PER_S = 60


class Producer:
    """Posts events round robin over tenants, each retried until 202; keeps what was acknowledged."""

    def __init__(self, api: httpx.Client, tenants: list[Tenant]) -> None:
        self.api = api
        self.tenants = tenants
        self.acked: dict[str, Tenant] = {}
        self.refused = Counter[str]()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _post(self, tenant: Tenant, event_id: str) -> bool:
        body = {"id": event_id, "event_type": "order.paid", "payload": {"id": event_id}}
        try:
            resp = self.api.post("/v1/events", json=body, headers=tenant.auth, timeout=10)
        except httpx.HTTPError as exc:
            self.refused[type(exc).__name__] += 1
            return False
        if resp.status_code != 202:
            self.refused[str(resp.status_code)] += 1
        return resp.status_code == 202

    def _run(self) -> None:
        i = 0
        while not self.stop.is_set():
            tenant, event_id = self.tenants[i % len(self.tenants)], f"evt_failover_{i}"
            while not self._post(tenant, event_id):
                time.sleep(0.05)
            self.acked[event_id] = tenant
            i += 1
            time.sleep(1 / RATE_PER_S)

    def __enter__(self) -> "Producer":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=60)
