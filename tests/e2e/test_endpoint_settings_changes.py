"""Endpoint changes take effect at once: headers, signing scheme, rate limit and ``max_in_flight``.

The sibling of ``test_endpoint_changes.py`` (delete, disable, URL, revocation), with the same two
kinds of backlog: one a worker holds for a rate limit (deliveries it has taken and would send for
seconds on its copy of the endpoint) and a plain one (short leases at ``max_in_flight``). Mid-way
the endpoint is changed; from the API's answer plus :data:`BOUND_S` on, the receiver sees only
requests under the new settings:

- headers: every request carries the new ``x-version``, none the old;
- signing scheme (rotated from HMAC to Ed25519, with a grace period): every request carries a
  ``v1a`` signature by the new public key (checked with ``cryptography``), none only the old HMAC;
- rate limit (4/s or none, lowered to 1/s): the arrivals keep to 1/s. The limit counts fixed
  1 s windows, so ``n`` arrivals span at least ``n - 2`` seconds; we allow 0.5 s of network jitter;
- ``max_in_flight`` (40 or 16, lowered to 1) against a receiver taking 300 ms per request: once the
  requests that had started by the bound have finished, no two requests are ever in flight at once.

Each waits for arrivals under the new settings (polling), never for time to pass without them.
Without the worker's revision check the held deliveries go out on the old copy: old headers and
HMAC-only signatures for seconds after the answer, arrivals at 4/s, several requests at once
(the rate-limited backlogs; a plain one's leases are sent at once, so these check that the new
settings reach the queued backlog).
"""

import time
from typing import Any

import httpx
import pytest

from tests.conftest import Processes, Tenant
from tests.e2e.test_ed25519 import signatures, verifies_v1a
from tests.e2e.test_endpoint_changes import BOUND_S, PLAIN, RATE_LIMITED, Backlog, _ids
from tests.support.poll import poll
from tests.support.receiver import Received, Receiver

BACKLOGS = pytest.mark.parametrize("backlog", [RATE_LIMITED, PLAIN], ids=["rate-limited", "plain"])

# Rate limit: 4/s (the worker holds up to 40 for slots, for seconds: at 20/s its lease is sent
# within the first window, before the change) or none; lowered to 1/s.
RATE_FROM_4 = Backlog("ok/rate", 80, {"rate_limit_per_s": 4, "max_in_flight": 40}, 4)
RATE_FROM_NONE = Backlog("slow/40/rate", 200, {"max_in_flight": 4}, 20)
RATE_ARRIVALS = 6  # arrivals after the bound to look at: at 1/s they span at least 4 s, at 4/s < 2 s

# max_in_flight: 300 ms a request; 20/s gives ~6 at once (the worker holds up to 40 for slots).
SLOW_S = 0.3
FLIGHT_FROM_40 = Backlog("slow/300/flight", 200, {"rate_limit_per_s": 20, "max_in_flight": 40}, 10)
FLIGHT_FROM_16 = Backlog("slow/300/flight", 200, {"max_in_flight": 16}, 32)
FLIGHT_ARRIVALS = 4  # arrivals to look at once the old ones have finished


def _start(
    api: httpx.Client, tenant: Tenant, receiver: Receiver, procs: Processes, backlog: Backlog, **extra: Any
) -> dict[str, Any]:
    """An endpoint with ``backlog``'s settings (and ``extra``), a worker, the backlog flowing."""
    fields = {"url": receiver.url(backlog.old_path), **backlog.fields, **extra}
    resp = api.post("/v1/endpoints", json=fields, headers=tenant.auth)
    assert resp.status_code == 201, resp.text
    procs.worker()
    events = [{"event_type": "a.b", "payload": {"i": i}} for i in range(backlog.events)]
    assert api.post("/v1/events/batch", json={"events": events}, headers=tenant.auth).status_code == 202
    poll(
        lambda: len(receiver.to(backlog.old_path)) >= backlog.sent_before_change,
        30,
        what="the backlog flowing",
    )
    return dict(resp.json())


def _answered(resp: httpx.Response, receiver: Receiver, backlog: Backlog) -> float:
    answered = time.time()
    assert resp.status_code == 200, resp.text
    before = len(_ids([r for r in receiver.to(backlog.old_path) if r.at <= answered]))
    assert before < backlog.events, "the change must come while deliveries are held"
    return answered


@BACKLOGS
@pytest.mark.parametrize("change", ["headers", "signing"])
def test_after_the_api_answers_every_request_has_the_new_headers_and_signature(
    api: httpx.Client, tenant: Tenant, receiver: Receiver, procs: Processes, change: str, backlog: Backlog
) -> None:
    ep = _start(api, tenant, receiver, procs, backlog, headers={"x-version": "1"})
    asked = time.time()
    if change == "headers":
        resp = api.patch(
            f"/v1/endpoints/{ep['id']}", json={"headers": {"x-version": "2"}}, headers=tenant.auth
        )
    else:  # the scheme changes through a rotation (docs/api.md); the grace period keeps the HMAC one
        resp = api.post(
            f"/v1/endpoints/{ep['id']}/secret/rotate",
            json={"signing": "ed25519", "grace_period_s": 3600},
            headers=tenant.auth,
        )
    answered = _answered(resp, receiver, backlog)
    public_key = resp.json().get("public_key")

    def new_settings(r: Received) -> bool:
        if change == "headers":
            return r.headers.get("x-version") == "2"
        return any(verifies_v1a(public_key, r, s) for s in signatures(r).get("v1a", []))

    poll(lambda: len(_ids(receiver.to(backlog.old_path))) == backlog.events, 60, what="every event delivered")
    got = receiver.to(backlog.old_path)
    assert any(new_settings(r) for r in got if r.at > answered + BOUND_S), "nothing went out after"
    assert not any(new_settings(r) for r in got if r.at < asked), "the old settings must tell apart"
    late = [r for r in got if r.at > answered and not new_settings(r)]
    lateness_s = max((r.at - answered for r in late), default=0.0)
    print(f"{change} {backlog.old_path}: {len(late)} old-settings requests after, last +{lateness_s:.3f}s")
    assert lateness_s <= BOUND_S, (
        f"{len(late)} requests under the old settings, the last {lateness_s:.3f}s late"
    )


@pytest.mark.parametrize("backlog", [RATE_FROM_4, RATE_FROM_NONE], ids=["rate-limited", "plain"])
def test_a_lowered_rate_limit_holds_from_the_api_answer_on(
    api: httpx.Client, tenant: Tenant, receiver: Receiver, procs: Processes, backlog: Backlog
) -> None:
    ep = _start(api, tenant, receiver, procs, backlog)
    first = receiver.to(backlog.old_path)[0].at
    resp = api.patch(f"/v1/endpoints/{ep['id']}", json={"rate_limit_per_s": 1}, headers=tenant.auth)
    answered = _answered(resp, receiver, backlog)
    before = [r for r in receiver.to(backlog.old_path) if r.at <= answered]
    print(f"rate {backlog.old_path}: {len(before)} before, over {answered - first:.3f}s")

    def after() -> list[Received]:
        return [r for r in receiver.to(backlog.old_path) if r.at > answered + BOUND_S]

    arrivals = poll(
        lambda: after()[:RATE_ARRIVALS] if len(after()) >= RATE_ARRIVALS else None,
        30,
        what=f"{RATE_ARRIVALS} requests after the bound",
    )
    span_s = arrivals[-1].at - arrivals[0].at
    print(f"rate {backlog.old_path}: {RATE_ARRIVALS} arrivals after the bound over {span_s:.3f}s")
    # 1/s in fixed 1 s windows: n arrivals in n distinct windows, so at least n - 2 s apart
    assert span_s >= RATE_ARRIVALS - 2 - 0.5, f"{RATE_ARRIVALS} arrivals in {span_s:.3f}s at 1/s"


@pytest.mark.parametrize("backlog", [FLIGHT_FROM_40, FLIGHT_FROM_16], ids=["rate-limited", "plain"])
def test_a_lowered_max_in_flight_holds_once_the_requests_already_sent_end(
    api: httpx.Client, tenant: Tenant, receiver: Receiver, procs: Processes, backlog: Backlog
) -> None:
    ep = _start(api, tenant, receiver, procs, backlog)
    resp = api.patch(f"/v1/endpoints/{ep['id']}", json={"max_in_flight": 1}, headers=tenant.auth)
    answered = _answered(resp, receiver, backlog)

    def seen() -> list[tuple[Received, int]]:
        """Each request with the requests in flight at its arrival (itself included)."""
        with receiver.lock:
            path = "/" + backlog.old_path
            return list(
                zip([r for r in receiver.requests if r.path == path], receiver.concurrency[path], strict=True)
            )

    peak_before = max(n for r, n in seen() if r.at <= answered)
    assert peak_before > 1, "the old limit must let several go at once, or lowering it shows nothing"
    # the requests that may start under the old limit (up to the bound) have all ended by then
    poll(lambda: any(r.at > answered + BOUND_S for r, _ in seen()), 30, what="a request after the bound")
    cleared = max(r.at for r, _ in seen() if r.at <= answered + BOUND_S) + SLOW_S + 0.05

    def after() -> list[tuple[Received, int]]:
        return [(r, n) for r, n in seen() if r.at > cleared]

    arrivals = poll(
        lambda: after()[:FLIGHT_ARRIVALS] if len(after()) >= FLIGHT_ARRIVALS else None,
        30,
        what=f"{FLIGHT_ARRIVALS} requests after the old ones ended",
    )
    late = [(r, n) for r, n in seen() if r.at > answered + BOUND_S and r.at <= cleared]
    print(
        f"max_in_flight {backlog.fields}: peak {peak_before} before; cleared +{cleared - answered:.3f}s, "
        f"{len(late)} arrivals in between; at once after: {[n for _, n in arrivals]}"
    )
    assert all(n == 1 for _, n in arrivals), [n for _, n in arrivals]
    assert all(n == 1 for _, n in after()), [n for _, n in after()]
