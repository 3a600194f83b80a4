"""Ingest while a tenant's endpoints keep changing: retried inside the API, never `storage_unavailable`.

A real API server and Redis; one thread toggles an endpoint in a tight loop while batches are
posted. Every batch is either accepted whole (202) or refused whole with 503 ``routes_changing``
and ``Retry-After``: Redis answered all along, so it is never called unavailable.
"""

import threading
from collections import Counter
from typing import Any

import httpx

from tests.api.helpers import assert_error

URL = "http://127.0.0.1:9/hook"
TOGGLES = 400
BATCHES = 20
EVENTS_PER_BATCH = 20


def test_batches_posted_while_an_endpoint_toggles_are_accepted_or_refused_whole(
    api: httpx.Client, tenant: Any, make_endpoint: Any
) -> None:
    toggled = make_endpoint(URL + "/toggled")
    make_endpoint(URL + "/steady")
    stop = threading.Event()
    toggles = 0

    def toggle() -> None:
        nonlocal toggles
        with httpx.Client(base_url=str(api.base_url), timeout=30) as own:
            while toggles < TOGGLES or not stop.is_set():
                resp = own.patch(
                    f"/v1/endpoints/{toggled['id']}", json={"disabled": toggles % 2 == 0}, headers=tenant.auth
                )
                assert resp.status_code == 200, resp.text
                toggles += 1

    toggler = threading.Thread(target=toggle)
    toggler.start()
    answers: list[httpx.Response] = []
    try:
        for b in range(BATCHES):
            events = [
                {"event_type": "a.b", "payload": {"n": i}, "id": f"b{b}-e{i}"}
                for i in range(EVENTS_PER_BATCH)
            ]
            answers.append(api.post("/v1/events/batch", json={"events": events}, headers=tenant.auth))
    finally:
        stop.set()
        toggler.join(timeout=60)
    assert toggles >= TOGGLES

    codes = Counter(r.status_code if r.status_code != 503 else r.json()["error"] for r in answers)
    print(f"{toggles} toggles; batches answered: {dict(codes)}")
    assert set(codes) <= {202, "routes_changing"}, codes
    for b, resp in enumerate(answers):
        ids = [f"b{b}-e{i}" for i in range(EVENTS_PER_BATCH)]
        found = [api.get(f"/v1/events/{i}", headers=tenant.auth).status_code for i in ids]
        if resp.status_code == 202:
            assert [e["id"] for e in resp.json()] == ids
            assert found == [200] * EVENTS_PER_BATCH, f"batch {b} accepted but not all stored"
        else:
            assert_error(resp, 503, "nothing was stored")
            assert int(resp.headers["retry-after"]) >= 1
            assert found == [404] * EVENTS_PER_BATCH, f"batch {b} refused but partly stored"
